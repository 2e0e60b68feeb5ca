#include "datasets/raw_dataset.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>

#include "core/error.h"
#include "datasets/dataset.h"
#include "datasets/idx.h"

namespace convnet {
namespace {

const std::string kFashion = "/usr/share/datasets/fashion-mnist/";

std::string temp_path(const std::string& name) {
  return ::testing::TempDir() + "/" + std::to_string(getpid()) + "_" + name;
}

bool exists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }

// Debian's dataset-fashion-mnist (installed by launch/install-deps.sh): the
// real 10,000-image test set, gzipped IDX.
TEST(Idx, ReadsTheRealFashionMnistTestSet) {
  IdxReader labels(kFashion + "t10k-labels-idx1-ubyte.gz");
  ASSERT_EQ(labels.dims(), (std::vector<int64_t>{10000}));
  std::vector<uint8_t> l(labels.count());
  labels.read(labels.count(), l.data());
  EXPECT_EQ((std::vector<int>{l[0], l[1], l[2], l[3], l[4]}), (std::vector<int>{9, 2, 1, 1, 6}));
  IdxReader images(kFashion + "t10k-images-idx3-ubyte.gz");
  ASSERT_EQ(images.dims(), (std::vector<int64_t>{10000, 28, 28}));
  std::vector<uint8_t> first(images.item_bytes());
  images.read(1, first.data());
  int64_t sum = 0;
  for (uint8_t v : first) sum += v;
  EXPECT_EQ(sum, 33456);  // as Python's gzip module reads it
}

TEST(Idx, BadFilesAreNamed) {
  const std::string text = temp_path("not_idx.txt");
  std::ofstream(text) << "hello, this is not an IDX file";
  try {
    IdxReader reader(text);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(text + ": not an IDX file"), std::string::npos)
        << e.what();
  }
  // A header that promises 10 items followed by 3.
  const std::string cut = temp_path("cut.idx");
  {
    std::ofstream out(cut, std::ios::binary);
    const unsigned char header[] = {0, 0, 8, 1, 0, 0, 0, 10, 1, 2, 3};
    out.write(reinterpret_cast<const char*>(header), sizeof(header));
  }
  IdxReader reader(cut);
  std::vector<uint8_t> data(10);
  try {
    reader.read(10, data.data());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("file ends early"), std::string::npos) << e.what();
  }
  EXPECT_THROW(IdxReader(temp_path("missing.idx")), Error);
  std::remove(text.c_str());
  std::remove(cut.c_str());
}

TEST(RawDataset, RoundTripWithMeanAndStd) {
  const std::string path = temp_path("raw.h5");
  DatasetInfo info{.count = 3,
                   .height = 1,
                   .width = 2,
                   .channels = 2,
                   .num_classes = 2,
                   .class_names = {"cat", "dog"},
                   .source = "test"};
  // Pixels (HWC): channel 0 takes 0 and 255, channel 1 always 51 (0.2).
  const std::vector<uint8_t> images{0, 51, 255, 51, 0, 51, 255, 51, 0, 51, 255, 51};
  const std::vector<int64_t> labels{1, 0, 1};
  {
    RawDatasetWriter writer(path, info);
    writer.append(images.data(), labels.data(), 2);
    EXPECT_FALSE(exists(path)) << "nothing at the final name before finish()";
    writer.append(images.data() + 8, labels.data() + 2, 1);
    writer.finish();
  }
  Dataset dataset(path);
  EXPECT_EQ(dataset.info().count, 3);
  EXPECT_EQ(dataset.info().channels, 2);
  EXPECT_EQ(dataset.info().num_classes, 2);
  EXPECT_EQ(dataset.info().class_names, (std::vector<std::string>{"cat", "dog"}));
  EXPECT_EQ(dataset.info().source, "test");
  EXPECT_EQ(dataset.labels(), labels);
  std::vector<uint8_t> back(12);
  for (int64_t i = 0; i < 3; ++i) dataset.read_raw(i, back.data() + 4 * i);
  EXPECT_EQ(back, images);
  // Channel 0: half 0, half 1 -> mean 0.5, std 0.5. Channel 1: constant 0.2.
  EXPECT_NEAR(dataset.mean()[0], 0.5, 1e-12);
  EXPECT_NEAR(dataset.std()[0], 0.5, 1e-12);
  EXPECT_NEAR(dataset.mean()[1], 0.2, 1e-12);
  EXPECT_NEAR(dataset.std()[1], 0.0, 1e-6);
  EXPECT_THROW(dataset.read_raw(3, back.data()), Error);
  std::remove(path.c_str());
}

TEST(RawDataset, BadInputLeavesNoFile) {
  const std::string path = temp_path("bad.h5");
  DatasetInfo info{.count = 2,
                   .height = 1,
                   .width = 1,
                   .channels = 1,
                   .num_classes = 2,
                   .class_names = {"a", "b"},
                   .source = "test"};
  const uint8_t pixels[2] = {1, 2};
  const int64_t bad_label[2] = {0, 5};
  {
    RawDatasetWriter writer(path, info);
    try {
      writer.append(pixels, bad_label, 2);
      FAIL() << "expected an error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("label 5 of image 1 is outside [0, 2)"),
                std::string::npos)
          << e.what();
    }
    const int64_t good[1] = {1};
    writer.append(pixels, good, 1);
    EXPECT_THROW(writer.finish(), Error);  // 1 of 2 images
  }
  EXPECT_FALSE(exists(path));
  EXPECT_FALSE(exists(path + ".tmp-" + std::to_string(getpid()))) << "temporary removed";
  EXPECT_THROW(Dataset(temp_path("missing.h5")), Error);
  info.class_names = {"only one"};
  EXPECT_THROW(RawDatasetWriter(path, info), Error);
}

}  // namespace
}  // namespace convnet
