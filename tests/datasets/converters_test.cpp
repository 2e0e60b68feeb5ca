#include "datasets/converters.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "datasets/dataset.h"
#include "datasets/image.h"
#include "tests/testing/test_util.h"

namespace convnet {
namespace {

namespace fs = std::filesystem;

std::string temp_dir(const std::string& name) { return testing::fresh_temp_dir(name); }

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

// A CIFAR record: label byte(s), then R, G, B planes; pixel value encodes
// (record, channel, position) so the HWC transpose can be checked.
std::vector<uint8_t> cifar_records(int n, int label_bytes, int first) {
  std::vector<uint8_t> bytes;
  for (int r = 0; r < n; ++r) {
    if (label_bytes == 2) bytes.push_back(uint8_t(r % 20));  // coarse label
    bytes.push_back(uint8_t((first + r) % (label_bytes == 2 ? 100 : 10)));
    for (int k = 0; k < 3; ++k)
      for (int p = 0; p < 1024; ++p) bytes.push_back(uint8_t((first + r) * 7 + k * 50 + p));
  }
  return bytes;
}

TEST(ConvertCifar, Cifar10TrainAndTestRoundTrip) {
  const std::string dir = temp_dir("cifar10");
  const std::string batches = dir + "/cifar-10-batches-bin";
  fs::create_directories(batches);
  for (int i = 1; i <= 5; ++i)
    write_bytes(batches + "/data_batch_" + std::to_string(i) + ".bin",
                cifar_records(3, 1, (i - 1) * 3));
  write_bytes(batches + "/test_batch.bin", cifar_records(2, 1, 100));
  std::ofstream(batches + "/batches.meta.txt")
      << "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n";

  // The parent folder works too.
  const ConvertSummary train = convert_cifar(dir, 10, "train", dir + "/train.h5", false, nullptr);
  EXPECT_EQ(train.info.count, 15);
  Dataset dataset(dir + "/train.h5");
  EXPECT_EQ(dataset.size(), 15);
  EXPECT_EQ(dataset.info().height, 32);
  EXPECT_EQ(dataset.info().class_names.back(), "truck");
  EXPECT_EQ(dataset.labels()[4], 4);
  EXPECT_EQ(dataset.labels()[14], 4);  // (14 % 10)
  std::vector<uint8_t> pixels(32 * 32 * 3);
  dataset.read_raw(4, pixels.data());
  // Pixel (y=1, x=2) = position 34, green channel: 4 * 7 + 50 + 34.
  EXPECT_EQ(pixels[(1 * 32 + 2) * 3 + 1], uint8_t(4 * 7 + 50 + 34));

  convert_cifar(batches, 10, "test", dir + "/test.h5", true, nullptr);
  EXPECT_EQ(Dataset(dir + "/test.h5").size(), 2);
}

TEST(ConvertCifar, Cifar100UsesFineLabelsAndRejectsTruncatedFiles) {
  const std::string dir = temp_dir("cifar100");
  write_bytes(dir + "/train.bin", cifar_records(4, 2, 95));
  write_bytes(dir + "/test.bin", cifar_records(1, 2, 0));
  convert_cifar(dir, 100, "train", dir + "/train.h5", false, nullptr);
  Dataset dataset(dir + "/train.h5");
  EXPECT_EQ(dataset.info().num_classes, 100);
  EXPECT_EQ(dataset.labels(), (std::vector<int64_t>{95, 96, 97, 98}));
  std::vector<uint8_t> bytes = cifar_records(2, 2, 0);
  bytes.pop_back();
  write_bytes(dir + "/test.bin", bytes);
  try {
    convert_cifar(dir, 100, "test", dir + "/test.h5", false, nullptr);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("test.bin: 6147 bytes is not a whole number"),
              std::string::npos)
        << e.what();
  }
  EXPECT_FALSE(fs::exists(dir + "/test.h5"));
  EXPECT_THROW(convert_cifar(dir + "/nothing", 10, "train", dir + "/x.h5", false, nullptr), Error);
  EXPECT_THROW(convert_cifar(dir, 100, "validation", dir + "/x.h5", false, nullptr), Error);
}

Image pattern(int64_t h, int64_t w, int seed) {
  Image image{h, w, 3, std::vector<uint8_t>(h * w * 3)};
  for (int64_t i = 0; i < h * w; ++i)
    for (int k = 0; k < 3; ++k)
      image.pixels[i * 3 + k] = uint8_t(seed * 30 + k * 60 + (i % w) * 2 + (i / w));
  return image;
}

// cats: two JPEGs; dogs: a PNG in a nested folder and a JPEG; plus a
// non-image file that is ignored.
std::string make_tree(const std::string& name) {
  const std::string root = temp_dir(name);
  fs::create_directories(root + "/cats");
  fs::create_directories(root + "/dogs/nested");
  write_bytes(root + "/cats/a.jpg", encode_jpeg(pattern(40, 60, 1), 90));
  write_bytes(root + "/cats/b.JPEG", encode_jpeg(pattern(50, 30, 2), 90));
  write_bytes(root + "/dogs/c.jpg", encode_jpeg(pattern(20, 20, 3), 90));
  write_bytes(root + "/dogs/nested/d.jpg", encode_jpeg(pattern(64, 48, 4), 90));
  std::ofstream(root + "/dogs/readme.txt") << "not an image";
  return root;
}

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

TEST(ConvertImageFolder, EncodedLayoutStoresFilesAsTheyAre) {
  const std::string root = make_tree("folder_encoded");
  const std::string out_dir = temp_dir("folder_encoded_out");
  const std::string out = out_dir + "/folder_encoded.h5";
  const ConvertSummary summary = convert_image_folder(root, out, {}, nullptr);
  EXPECT_EQ(summary.info.count, 4);
  Dataset dataset(out);
  EXPECT_EQ(dataset.info().layout, DatasetLayout::encoded);
  EXPECT_EQ(dataset.info().class_names, (std::vector<std::string>{"cats", "dogs"}));
  EXPECT_EQ(dataset.labels(), (std::vector<int64_t>{0, 0, 1, 1}));
  EXPECT_EQ(dataset.read_encoded(2), read_file(root + "/dogs/c.jpg"));
  EXPECT_EQ(dataset.read_encoded(3), read_file(root + "/dogs/nested/d.jpg"));
  const Image d = dataset.load(3);
  EXPECT_EQ(d.height, 64);
  EXPECT_EQ(d.width, 48);
}

TEST(ConvertImageFolder, ResizeRawSizeAndJobsGiveTheSameResult) {
  const std::string root = make_tree("folder_resize");
  const std::string out_dir = temp_dir("folder_resize_out");
  ImageFolderOptions options;
  options.resize = 24;
  convert_image_folder(root, out_dir + "/r1.h5", options, nullptr);
  options.jobs = 3;
  convert_image_folder(root, out_dir + "/r3.h5", options, nullptr);
  Dataset one(out_dir + "/r1.h5"), three(out_dir + "/r3.h5");
  for (int64_t i = 0; i < 4; ++i) EXPECT_EQ(one.read_encoded(i), three.read_encoded(i));
  const Image a = one.load(0);  // 40x60 -> shorter side 24
  EXPECT_EQ(a.height, 24);
  EXPECT_EQ(a.width, 36);
  EXPECT_EQ(one.load(2).height, 20);  // 20x20 is never enlarged

  ImageFolderOptions raw;
  raw.height = 16;
  raw.width = 12;
  raw.channels = 1;
  convert_image_folder(root, out_dir + "/raw.h5", raw, nullptr);
  Dataset fixed(out_dir + "/raw.h5");
  EXPECT_EQ(fixed.info().layout, DatasetLayout::raw);
  EXPECT_EQ(fixed.info().height, 16);
  EXPECT_EQ(fixed.info().channels, 1);
  EXPECT_EQ(fixed.size(), 4);
}

TEST(ConvertImageFolder, CorruptFileIsNamedOrSkippedWhenAsked) {
  const std::string root = make_tree("folder_corrupt");
  const std::string out_dir = temp_dir("folder_corrupt_out");
  std::vector<uint8_t> jpeg = encode_jpeg(pattern(40, 40, 5), 90);
  jpeg.resize(jpeg.size() / 2);
  write_bytes(root + "/dogs/broken.jpg", jpeg);
  const std::string out = out_dir + "/corrupt.h5";
  try {
    convert_image_folder(root, out, {}, nullptr);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("dogs/broken.jpg: JPEG"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(out)) << "no output after a failed conversion";
  ImageFolderOptions options;
  options.skip_corrupt = true;
  const ConvertSummary summary = convert_image_folder(root, out, options, nullptr);
  EXPECT_EQ(summary.skipped, 1);
  EXPECT_EQ(Dataset(out).size(), 4);
}

}  // namespace
}  // namespace convnet
