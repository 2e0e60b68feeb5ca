// Stochastic depth (models/drop_path.h) in a whole residual model.
#include "models/drop_path.h"

#include <gtest/gtest.h>

#include <random>

#include "models/zoo.h"
#include "tests/testing/test_util.h"

namespace convnet {
namespace {

// resnet20 has 9 residual blocks (0 .. 8); with --drop-path 0.5 block b is
// dropped with probability 0.5 b / 8.
constexpr double kRate = 0.5;
constexpr uint64_t kSeed = 17;

struct Model {
  explicit Model(double drop_path) {
    net = build_model(
        context, {.name = "resnet20", .num_classes = 10, .drop_path = drop_path, .seed = kSeed},
        store, Shape{4, 3, 8, 8});
    initialize_parameters(store, 3);
    std::mt19937 rng(5);
    std::normal_distribution<float> normal;
    std::vector<float> input(static_cast<std::size_t>(net->input().numel()));
    for (float& v : input) v = normal(rng);
    copy_from_host(net->input(), input.data());
  }
  // The gradient of sum(logits) at `step`.
  void train_step(int64_t step) {
    net->set_step(step);
    net->forward(Mode::training);
    net->output_grad().fill(1.0f);
    store.zero_grads();
    net->backward();
  }
  bool has_gradient(const std::string& name) const {
    for (float g : store.grad(store.find(name)).to_vector())
      if (g != 0) return true;
    return false;
  }
  Context context;
  ParamStore store;
  std::unique_ptr<Net> net;
};

// The first step at which the last block (p = 0.5) is dropped and block 1
// (p = 0.0625) is kept.
int64_t step_dropping_the_last_block() {
  for (int64_t step = 0; step < 1000; ++step)
    if (drop_path_dropped(kSeed, step, 8, kRate) && !drop_path_dropped(kSeed, step, 1, kRate / 8))
      return step;
  return -1;
}

TEST(DropPath, ADroppedBlockGetsNoGradientAndAKeptOneDoes) {
  Model m(kRate);
  const int64_t step = step_dropping_the_last_block();
  ASSERT_GE(step, 0);
  m.train_step(step);
  for (const char* name : {"layer3.2.conv1.weight", "layer3.2.conv2.weight", "layer3.2.bn2.weight"})
    EXPECT_FALSE(m.has_gradient(name)) << name << " of the dropped block";
  EXPECT_TRUE(m.has_gradient("layer1.1.conv1.weight"));
  EXPECT_TRUE(m.has_gradient("layer1.0.conv1.weight"));  // block 0: never dropped
}

// The draws depend on (seed, step, block) only, and about p of them drop.
TEST(DropPath, DrawsAreDeterministicAndFollowTheProbability) {
  int dropped = 0;
  for (int64_t step = 0; step < 4000; ++step) {
    const bool d = drop_path_dropped(kSeed, step, 8, 0.3);
    EXPECT_EQ(d, drop_path_dropped(kSeed, step, 8, 0.3));
    dropped += d ? 1 : 0;
    EXPECT_FALSE(drop_path_dropped(kSeed, step, 0, 0.0));
  }
  EXPECT_NEAR(dropped / 4000.0, 0.3, 0.03);
  EXPECT_FALSE(drop_path_dropped(kSeed, -1, 8, 0.9));  // no step set
}

// Evaluation uses every branch unscaled: the logits equal a model without
// stochastic depth; training with nothing dropped scales the kept branches.
TEST(DropPath, InferenceIsTheModelWithoutDropPath) {
  Model with(kRate), without(0);
  with.net->set_step(step_dropping_the_last_block());
  with.net->forward(Mode::inference);
  without.net->forward(Mode::inference);
  EXPECT_EQ(with.net->output().to_vector(), without.net->output().to_vector());
  with.net->forward(Mode::training);
  without.net->forward(Mode::training);
  EXPECT_NE(with.net->output().to_vector(), without.net->output().to_vector());
}

TEST(DropPath, DenseNetsAndProbabilitiesOutsideTheRangeAreRefused) {
  Context context;
  ParamStore a, b;
  EXPECT_TRUE(testing::throws_error_with(
      [&] {
        build_model(context, {.name = "densenet40_k12", .drop_path = 0.1}, a, Shape{1, 3, 8, 8});
      },
      "--drop-path drops residual blocks; densenet40_k12 has none"));
  EXPECT_TRUE(testing::throws_error_with(
      [&] {
        build_model(context, {.name = "resnet20", .drop_path = 1.0}, b, Shape{1, 3, 8, 8});
      },
      "--drop-path must lie in [0, 1), got 1"));
}

}  // namespace
}  // namespace convnet
