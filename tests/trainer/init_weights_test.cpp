#include "trainer/init_weights.h"

#include <gtest/gtest.h>

#include "core/error.h"
#include "models/weights_file.h"
#include "models/zoo.h"
#include "tests/testing/test_util.h"

namespace convnet {
namespace {

struct Model {
  Context context;
  ParamStore store;
  std::unique_ptr<Net> net;
  Model(int64_t classes, int64_t channels, uint64_t seed) {
    net =
        build_model(context, {.name = "resnet20", .num_classes = classes, .in_channels = channels},
                    store, Shape{1, channels, 8, 8});
    initialize_parameters(store, seed);
  }
  std::vector<float> values(const std::string& key) const {
    const int id = store.find(key);
    const ParamEntry& e = store.entries()[id];
    return (e.kind == EntryKind::buffer ? store.buffer(id) : store.param(id)).to_vector();
  }
};

// A resnet20 weights file (10 classes, 3 channels) with every BN buffer moved
// off its initial value, so that loaded statistics show.
std::string source_file(const std::string& dir) {
  Model source(10, 3, 1);
  for (std::size_t i = 0; i < source.store.entries().size(); ++i)
    if (source.store.entries()[i].kind == EntryKind::buffer) {
      const Tensor t = source.store.buffer(static_cast<int>(i));
      for (int64_t k = 0; k < t.numel(); ++k) t.data<float>()[k] = 0.5f + 0.01f * float(k);
    }
  const std::string path = dir + "/source.h5";
  save_weights(path, {.model = "resnet20", .num_classes = 10, .in_channels = 3}, source.store);
  return path;
}

TEST(InitWeights, NewClassCountKeepsAFreshClassifier) {
  const std::string dir = testing::fresh_temp_dir("init_weights_classes");
  const std::string path = source_file(dir);
  const Model source(10, 3, 1);
  Model target(5, 3, 2);
  const Model fresh(5, 3, 2);
  const std::string account = load_initial_weights(path, target.store, {"resnet20", 5, 3, false});
  EXPECT_NE(account.find("classifier fc.weight re-initialized for 5 classes (the file has 10)"),
            std::string::npos)
      << account;
  EXPECT_EQ(target.values("conv1.weight"), source.values("conv1.weight"));
  EXPECT_EQ(target.values("layer3.2.conv2.weight"), source.values("layer3.2.conv2.weight"));
  EXPECT_FLOAT_EQ(target.values("layer1.0.bn1.running_var")[3], 0.53f);  // loaded statistics
  EXPECT_EQ(target.values("fc.weight"), fresh.values("fc.weight"));
  EXPECT_EQ(target.values("fc.bias"), fresh.values("fc.bias"));
}

TEST(InitWeights, OtherInputChannelsNeedAdaptStem) {
  const std::string dir = testing::fresh_temp_dir("init_weights_stem");
  const std::string path = source_file(dir);
  const Model source(10, 3, 1);
  Model gray(10, 1, 2);
  try {
    load_initial_weights(path, gray.store, {"resnet20", 10, 1, false});
    FAIL() << "loaded a 3-channel stem into a 1-channel model";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("3-channel images but the data has 1"), std::string::npos) << message;
    EXPECT_NE(message.find("conv1.weight"), std::string::npos) << message;
    EXPECT_NE(message.find("--adapt-stem"), std::string::npos) << message;
  }
  load_initial_weights(path, gray.store, {"resnet20", 10, 1, true});
  const std::vector<float> w = source.values("conv1.weight"), g = gray.values("conv1.weight");
  ASSERT_EQ(g.size(), w.size() / 3);  // (16, 1, 3, 3) from (16, 3, 3, 3): summed
  for (int64_t o = 0; o < 16; ++o)
    for (int64_t p = 0; p < 9; ++p)
      EXPECT_FLOAT_EQ(g[o * 9 + p],
                      w[(o * 3 + 0) * 9 + p] + w[(o * 3 + 1) * 9 + p] + w[(o * 3 + 2) * 9 + p]);
  Model four(10, 4, 2);  // 4 channels: file channel c % 3, scaled by 3 / 4
  load_initial_weights(path, four.store, {"resnet20", 10, 4, true});
  const std::vector<float> f = four.values("conv1.weight");
  EXPECT_FLOAT_EQ(f[(0 * 4 + 3) * 9 + 2], w[(0 * 3 + 0) * 9 + 2] * 0.75f);
  EXPECT_EQ(four.values("layer1.0.conv1.weight"), source.values("layer1.0.conv1.weight"));
}

TEST(InitWeights, AnotherModelIsAnError) {
  const std::string dir = testing::fresh_temp_dir("init_weights_model");
  const std::string path = source_file(dir);
  Context context;
  ParamStore store;
  auto net = build_model(context, {.name = "resnet32"}, store, Shape{1, 3, 8, 8});
  try {
    load_initial_weights(path, store, {"resnet32", 10, 3, false});
    FAIL() << "loaded resnet20 weights into resnet32";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("holds resnet20 weights, but --model is resnet32"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace convnet
