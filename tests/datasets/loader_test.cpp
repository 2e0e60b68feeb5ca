#include "datasets/loader.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>

#include "core/error.h"
#include "core/hdf5_handle.h"
#include "datasets/encoded_dataset.h"
#include "datasets/raw_dataset.h"

namespace convnet {
namespace {

std::string temp_path(const std::string& name) {
  return ::testing::TempDir() + "/" + std::to_string(getpid()) + "_" + name;
}

// n images of (h, w, c); every pixel of image i is i % 251, label i % classes.
std::string make_raw(const std::string& name, int64_t n, int64_t h, int64_t w, int64_t c,
                     int64_t classes = 10) {
  const std::string path = temp_path(name);
  DatasetInfo info;
  info.count = n;
  info.height = h;
  info.width = w;
  info.channels = c;
  info.num_classes = classes;
  for (int64_t k = 0; k < classes; ++k) info.class_names.push_back("c" + std::to_string(k));
  info.source = "test";
  RawDatasetWriter writer(path, info);
  for (int64_t i = 0; i < n; ++i) {
    std::vector<uint8_t> pixels(h * w * c);
    for (int64_t p = 0; p < h * w * c; ++p) pixels[p] = uint8_t((i + p * (i % 3)) % 251);
    const int64_t label = i % classes;
    writer.append(pixels.data(), &label, 1);
  }
  writer.finish();
  return path;
}

std::vector<Batch> take(Loader& loader, int64_t n) {
  std::vector<Batch> batches(n);
  for (Batch& b : batches) EXPECT_TRUE(loader.next(&b));
  return batches;
}

LoaderOptions train_options(int64_t batch, int64_t world, int64_t rank, int64_t accumulate) {
  LoaderOptions options;
  options.augment.recipe = Recipe::cifar;
  options.augment.seed = 42;
  options.batch_size = batch;
  options.world = world;
  options.rank = rank;
  options.accumulate = accumulate;
  options.threads = 2;
  return options;
}

// The samples of global step `step` as one sorted list, read by `world`
// ranks with `accumulate` micro-batches each.
std::multiset<int64_t> step_samples(const std::shared_ptr<Dataset>& data, int64_t batch,
                                    int64_t world, int64_t accumulate, int64_t step) {
  std::multiset<int64_t> samples;
  for (int64_t r = 0; r < world; ++r) {
    Loader loader(data, train_options(batch, world, r, accumulate), {0, step * accumulate});
    for (const Batch& b : take(loader, accumulate))
      samples.insert(b.indices.begin(), b.indices.end());
  }
  return samples;
}

TEST(Loader, GlobalBatchesDoNotDependOnTheRankSplit) {
  auto data = std::make_shared<Dataset>(make_raw("split.h5", 100, 4, 4, 3));
  // Global batch 16: 1 rank x 16, 2 x 8, 4 x 4, 2 x 4 x 2 accumulation,
  // 1 x 8 x 2 accumulation.
  for (int64_t step : {0, 3, 5}) {
    const auto reference = step_samples(data, 16, 1, 1, step);
    EXPECT_EQ(reference.size(), 16u);
    EXPECT_EQ(step_samples(data, 8, 2, 1, step), reference);
    EXPECT_EQ(step_samples(data, 4, 4, 1, step), reference);
    EXPECT_EQ(step_samples(data, 4, 2, 2, step), reference);
    EXPECT_EQ(step_samples(data, 8, 1, 2, step), reference);
  }
  Loader loader(data, train_options(8, 2, 0, 1));
  EXPECT_EQ(loader.steps_per_epoch(), 6);  // 100 / 16, last partial batch dropped
}

TEST(Loader, MicroBatchesMatchAcrossRankCountsWithAccumulation) {
  // 4 ranks x batch 8 == 2 ranks x batch 8 x 2 accumulation, micro-batch by
  // micro-batch (BN statistics see the same samples).
  auto data = std::make_shared<Dataset>(make_raw("micro.h5", 64, 2, 2, 1));
  std::set<std::vector<int64_t>> four, two;
  for (int64_t r = 0; r < 4; ++r) {
    Loader loader(data, train_options(8, 4, r, 1));
    four.insert(take(loader, 1)[0].indices);
  }
  for (int64_t r = 0; r < 2; ++r) {
    Loader loader(data, train_options(8, 2, r, 2));
    for (const Batch& b : take(loader, 2)) two.insert(b.indices);
  }
  EXPECT_EQ(four, two);
}

TEST(Loader, ContentDoesNotDependOnThreadsAndPositionRestores) {
  auto data = std::make_shared<Dataset>(make_raw("threads.h5", 40, 8, 8, 3));
  LoaderOptions one = train_options(4, 1, 0, 1);
  one.threads = 1;
  LoaderOptions three = train_options(4, 1, 0, 1);
  three.threads = 3;
  three.prefetch = 7;
  Loader a(data, one), b(data, three);
  // 10 steps per epoch: 25 batches cross two epoch boundaries.
  const std::vector<Batch> first = take(a, 25), second = take(b, 25);
  for (int64_t i = 0; i < 25; ++i) {
    EXPECT_EQ(first[i].indices, second[i].indices);
    EXPECT_EQ(first[i].images, second[i].images) << "batch " << i;
    EXPECT_EQ(first[i].epoch, i / 10);
  }
  EXPECT_NE(first[0].indices, first[10].indices) << "each epoch has its own order";
  // Save after 13 batches, restore into a new loader: the same continuation.
  Loader c(data, one);
  take(c, 13);
  const LoaderPosition saved = c.position();
  EXPECT_EQ(saved.epoch, 1);
  EXPECT_EQ(saved.micro_batch, 3);
  Loader resumed(data, three, saved);
  const std::vector<Batch> rest = take(resumed, 12);
  for (int64_t i = 0; i < 12; ++i) {
    EXPECT_EQ(rest[i].indices, first[13 + i].indices);
    EXPECT_EQ(rest[i].images, first[13 + i].images);
  }
}

TEST(Loader, EvaluationCoversEverySampleOnce) {
  auto data = std::make_shared<Dataset>(make_raw("eval.h5", 23, 2, 2, 1));
  for (int64_t world = 1; world <= 5; ++world) {
    std::vector<int64_t> seen;
    for (int64_t r = 0; r < world; ++r) {
      LoaderOptions options;
      options.train = false;
      options.batch_size = 3;
      options.world = world;
      options.rank = r;
      Loader loader(data, options);
      Batch batch;
      while (loader.next(&batch)) {
        EXPECT_EQ(batch.images.size(), std::size_t(batch.count * 4));
        seen.insert(seen.end(), batch.indices.begin(), batch.indices.end());
        for (int64_t i = 0; i < batch.count; ++i) EXPECT_EQ(batch.labels[i], batch.indices[i] % 10);
      }
    }
    std::sort(seen.begin(), seen.end());
    std::vector<int64_t> all(23);
    for (int64_t i = 0; i < 23; ++i) all[i] = i;
    EXPECT_EQ(seen, all) << "world " << world;
  }
}

TEST(Loader, CifarRecipeShiftsFlipsAndNormalizes) {
  auto data = std::make_shared<Dataset>(make_raw("recipe.h5", 16, 6, 6, 1));
  LoaderOptions eval;
  eval.train = false;
  eval.batch_size = 16;
  eval.augment.mean = {0.5};
  eval.augment.std = {0.25};
  Loader plain(data, eval);
  Batch batch;
  ASSERT_TRUE(plain.next(&batch));
  std::vector<uint8_t> pixels(36);
  data->read_raw(5, pixels.data());
  for (int64_t p = 0; p < 36; ++p)
    EXPECT_NEAR(batch.images[5 * 36 + p], (pixels[p] / 255.0 - 0.5) / 0.25, 1e-5);
  // Training: some crops are shifted (zero padding appears as -mean/std).
  LoaderOptions train = train_options(16, 1, 0, 1);
  train.augment.mean = {0.5};
  train.augment.std = {0.25};
  Loader augmented(data, train);
  ASSERT_TRUE(augmented.next(&batch));
  int64_t padded = 0;
  for (float v : batch.images) padded += std::abs(v - (-2.0f)) < 1e-6;
  EXPECT_GT(padded, 0);
}

// NHWC batches (for the GPU backend) hold the same values as NCHW ones.
TEST(Loader, ChannelsLastIsATransposeOfNchw) {
  auto data = std::make_shared<Dataset>(make_raw("nhwc.h5", 8, 6, 5, 3));
  for (Recipe recipe : {Recipe::cifar, Recipe::imagenet}) {
    LoaderOptions options = train_options(4, 1, 0, 1);
    options.augment.recipe = recipe;
    options.augment.size = recipe == Recipe::imagenet ? 4 : 0;
    Loader nchw(data, options);
    options.augment.channels_last = true;
    Loader nhwc(data, options);
    Batch a, b;
    ASSERT_TRUE(nchw.next(&a));
    ASSERT_TRUE(nhwc.next(&b));
    const int64_t h = nchw.height(), w = nchw.width(), c = 3;
    for (int64_t n = 0; n < 4; ++n)
      for (int64_t k = 0; k < c; ++k)
        for (int64_t p = 0; p < h * w; ++p)
          ASSERT_EQ(a.images[(n * c + k) * h * w + p], b.images[(n * h * w + p) * c + k]);
  }
}

TEST(Loader, ImagenetRecipeOnEncodedData) {
  const std::string path = temp_path("encoded.h5");
  DatasetInfo info;
  info.layout = DatasetLayout::encoded;
  info.channels = 3;
  info.num_classes = 2;
  info.class_names = {"a", "b"};
  info.source = "test";
  {
    EncodedDatasetWriter writer(path, info);
    for (int64_t i = 0; i < 6; ++i) {
      Image image{30 + i * 7, 50 - i * 3, 3, {}};
      image.pixels.assign(image.height * image.width * 3, uint8_t(40 * i));
      writer.append(encode_jpeg(image, 95), i % 2, image);
    }
    writer.finish();
  }
  auto data = std::make_shared<Dataset>(path);
  LoaderOptions options;
  options.augment.recipe = Recipe::imagenet;
  options.augment.size = 16;
  options.batch_size = 3;
  Loader train(data, options);
  Batch batch;
  ASSERT_TRUE(train.next(&batch));
  EXPECT_EQ(train.height(), 16);
  EXPECT_EQ(batch.images.size(), 3u * 3 * 16 * 16);
  options.train = false;
  Loader eval(data, options);
  ASSERT_TRUE(eval.next(&batch));
  ASSERT_TRUE(eval.next(&batch));
  EXPECT_FALSE(eval.next(&batch));
  // A flat image stays flat through resize + crop: every value of sample 4
  // (pixel 160) equals its normalized value within JPEG noise.
  const double mean = data->mean()[0], std = data->std()[0];
  for (int64_t p = 0; p < 16 * 16; ++p)
    EXPECT_NEAR(batch.images[1 * 3 * 256 + p], (160 / 255.0 - mean) / std, 0.05);
}

TEST(Loader, RandomResizedCropStaysInsideTheImage) {
  for (int64_t i = 0; i < 200; ++i) {
    SampleRng rng(7, 0, i);
    const int64_t h = 50 + i % 13, w = 300 - i;
    const CropBox box = random_resized_crop(h, w, rng);
    EXPECT_GE(box.top, 0);
    EXPECT_GE(box.left, 0);
    EXPECT_LE(box.top + box.height, h);
    EXPECT_LE(box.left + box.width, w);
    EXPECT_GT(box.height * box.width, 0);
  }
  // Resize 256 + center crop 224 of a 512x1024 image: the middle 448x448.
  const CropBox center = resize_center_crop(512, 1024, 256, 224);
  EXPECT_DOUBLE_EQ(center.top, 32);
  EXPECT_DOUBLE_EQ(center.height, 448);
  EXPECT_DOUBLE_EQ(center.left, 288);
}

// A corrupt JPEG inside an encoded set: an error naming file and sample, or
// a counted replacement with skip_corrupt.
TEST(Loader, CorruptSampleIsNamedOrReplaced) {
  const std::string path = temp_path("corrupt.h5");
  DatasetInfo info;
  info.layout = DatasetLayout::encoded;
  info.channels = 3;
  info.num_classes = 1;
  info.class_names = {"a"};
  {
    EncodedDatasetWriter writer(path, info);
    Image image{8, 8, 3, std::vector<uint8_t>(192, 100)};
    for (int64_t i = 0; i < 4; ++i) {
      std::vector<uint8_t> bytes = encode_jpeg(image, 90);
      if (i == 2) bytes.resize(bytes.size() / 3);
      writer.append(bytes, 0, image);
    }
    writer.finish();
  }
  auto data = std::make_shared<Dataset>(path);
  LoaderOptions options;
  options.train = false;
  options.batch_size = 4;
  options.augment.size = 8;
  options.augment.mean = {0.5, 0.5, 0.5};  // the images are flat: the data's std is 0
  options.augment.std = {0.2, 0.2, 0.2};
  Loader loader(data, options);
  Batch batch;
  try {
    loader.next(&batch);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("corrupt.h5 sample 2 (/encoded): JPEG"), std::string::npos)
        << e.what();
  }
  options.train = true;
  options.skip_corrupt = true;
  Loader skipping(data, options);
  ASSERT_TRUE(skipping.next(&batch));
  EXPECT_EQ(batch.skipped, 1);
  EXPECT_EQ(std::count(batch.indices.begin(), batch.indices.end(), 2), 0);
}

// Files built with the HDF5 C API the way another tool might get them wrong.
TEST(Dataset, BadFilesAreNamed) {
  const std::string good = make_raw("good.h5", 5, 2, 2, 1, 3);
  auto expect_error = [](const std::string& spec, const std::string& text) {
    try {
      Dataset dataset(spec);
      FAIL() << "expected an error for " << spec;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
    }
  };
  expect_error(temp_path("missing.h5"), "missing.h5: dataset file does not exist");
  const std::string text = temp_path("text.h5");
  { std::ofstream(text) << "plain text"; }
  expect_error(text, "text.h5: not an HDF5 file");
  expect_error(temp_path("nomatch-*.h5"), "matches no file");

  auto edit = [&](const std::string& name, auto change) {
    const std::string path = temp_path(name);
    std::filesystem::copy_file(good, path, std::filesystem::copy_options::overwrite_existing);
    Hdf5Id file(H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT), H5Fclose, "open");
    change(file.get());
    return path;
  };
  const std::string short_labels = edit("short.h5", [](hid_t f) {
    H5Ldelete(f, "labels", H5P_DEFAULT);
    const hsize_t n = 4;
    Hdf5Id space(H5Screate_simple(1, &n, nullptr), H5Sclose, "space");
    Hdf5Id d(
        H5Dcreate2(f, "labels", H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
        H5Dclose, "labels");
    const int64_t values[4] = {0, 1, 2, 0};
    H5Dwrite(d.get(), H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, values);
  });
  expect_error(short_labels, "short.h5: /labels holds 4 labels but the images 5");
  const std::string bad_label = edit("label.h5", [](hid_t f) {
    Hdf5Id d(H5Dopen2(f, "labels", H5P_DEFAULT), H5Dclose, "labels");
    const int64_t values[5] = {0, 1, 2, 7, 0};
    H5Dwrite(d.get(), H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, values);
  });
  expect_error(bad_label, "label.h5: /labels[3] = 7 is outside [0, 3)");
  const std::string float_images = edit("float.h5", [](hid_t f) {
    H5Ldelete(f, "images", H5P_DEFAULT);
    const hsize_t dims[4] = {5, 2, 2, 1};
    Hdf5Id space(H5Screate_simple(4, dims, nullptr), H5Sclose, "space");
    Hdf5Id d(
        H5Dcreate2(f, "images", H5T_IEEE_F32LE, space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
        H5Dclose, "images");
  });
  expect_error(float_images, "float.h5: /images must be uint8");
  const std::string no_images =
      edit("noimages.h5", [](hid_t f) { H5Ldelete(f, "images", H5P_DEFAULT); });
  expect_error(no_images, "noimages.h5: missing dataset /images");
  // Shards must agree.
  const std::string other = make_raw("other.h5", 5, 3, 3, 1, 3);
  expect_error(good + "," + other, "other.h5: layout or image shape differs");
}

TEST(Dataset, ShardsReadAsOneDataset) {
  const std::string a = make_raw("shard-0.h5", 5, 2, 2, 1, 3);
  const std::string b = make_raw("shard-1.h5", 7, 2, 2, 1, 3);
  Dataset both(temp_path("shard-*.h5"));
  EXPECT_EQ(both.size(), 12);
  EXPECT_EQ(both.labels()[6], 1);  // shard 1's sample 1
  EXPECT_NE(both.describe(6).find("shard-1.h5 sample 1"), std::string::npos);
  std::vector<uint8_t> pixels(4);
  both.read_raw(6, pixels.data());
  EXPECT_EQ(pixels[0], 1);
  EXPECT_EQ(Dataset(a + "," + b).size(), 12);
}

}  // namespace
}  // namespace convnet
