#include "layers/sgd.h"

#include <gtest/gtest.h>

#include "core/error.h"

namespace convnet {
namespace {

// All values below are small binary fractions, so every f32 operation in the
// update is exact and the hand-computed results are compared exactly.

TEST(Sgd, MomentumStepsMatchHandComputation) {
  Context context;
  // Two segments: [0,2) with decay (conv weights), [2,3) without (a BN bias).
  Sgd sgd(context, {.momentum = 0.5, .weight_decay = 0.25},
          {{.offset = 0, .size = 2}, {.offset = 2, .size = 1, .apply_weight_decay = false}}, 3);
  std::vector<float> w{1.0f, -2.0f, 4.0f}, g{0.5f, 0.25f, -1.0f};
  Tensor params = Tensor::wrap(w.data(), Shape{3}), grads = Tensor::wrap(g.data(), Shape{3});

  sgd.step(params, grads, 0.5);
  // d = g + 0.25 w = (0.75, -0.25, -1); v = d; w -= 0.5 v
  EXPECT_EQ(w, (std::vector<float>{0.625f, -1.875f, 4.5f}));
  EXPECT_EQ(sgd.momentum_buffer().to_vector(), (std::vector<float>{0.75f, -0.25f, -1.0f}));

  sgd.step(params, grads, 0.5);
  // d = (0.5 + 0.15625, 0.25 - 0.46875, -1) = (0.65625, -0.21875, -1)
  // v = 0.5 v + d = (1.03125, -0.34375, -1.5); w -= 0.5 v
  EXPECT_EQ(sgd.momentum_buffer().to_vector(), (std::vector<float>{1.03125f, -0.34375f, -1.5f}));
  EXPECT_EQ(w, (std::vector<float>{0.109375f, -1.703125f, 5.25f}));
  EXPECT_EQ(sgd.step_count(), 2);
}

TEST(Sgd, NesterovAddsMomentumTimesVelocity) {
  Context context;
  Sgd sgd(context, {.momentum = 0.5, .nesterov = true}, {{.offset = 0, .size = 1}}, 1);
  std::vector<float> w{1.0f}, g{1.0f};
  Tensor params = Tensor::wrap(w.data(), Shape{1}), grads = Tensor::wrap(g.data(), Shape{1});
  sgd.step(params, grads, 0.25);  // v = 1; d = 1 + 0.5 = 1.5; w = 1 - 0.375
  EXPECT_EQ(w[0], 0.625f);
  sgd.step(params, grads, 0.25);  // v = 0.5 + 1 = 1.5; d = 1 + 0.75 = 1.75; w -= 0.4375
  EXPECT_EQ(w[0], 0.1875f);
}

TEST(Sgd, DampeningSkipsFirstStepAsPyTorch) {
  Context context;
  Sgd sgd(context, {.momentum = 0.5, .dampening = 0.5}, {{.offset = 0, .size = 1}}, 1);
  std::vector<float> w{0.0f}, g{1.0f};
  Tensor params = Tensor::wrap(w.data(), Shape{1}), grads = Tensor::wrap(g.data(), Shape{1});
  sgd.step(params, grads, 1.0);  // first step: v = g (no dampening), w = -1
  EXPECT_EQ(w[0], -1.0f);
  sgd.step(params, grads, 1.0);  // v = 0.5 * 1 + 0.5 * 1 = 1; w = -2
  EXPECT_EQ(w[0], -2.0f);
}

TEST(Sgd, PlainSgdWithoutMomentum) {
  Context context;
  Sgd sgd(context, {.momentum = 0.0, .weight_decay = 0.5}, {{.offset = 0, .size = 2}}, 2);
  std::vector<float> w{2.0f, -4.0f}, g{1.0f, 0.0f};
  sgd.step(Tensor::wrap(w.data(), Shape{2}), Tensor::wrap(g.data(), Shape{2}), 0.5);
  EXPECT_EQ(w, (std::vector<float>{1.0f, -3.0f}));  // w -= 0.5 * (g + 0.5 w)
  EXPECT_FALSE(sgd.momentum_buffer().defined());
}

// fp16 loss scaling: gradients 2^16 times too large with grad_scale 2^-16
// give bit-identical updates (power-of-two scaling is exact in f32).
TEST(Sgd, GradScaleUndoesAPowerOfTwoLossScaleExactly) {
  Context context;
  const SgdOptions o{.momentum = 0.9, .weight_decay = 1e-4, .nesterov = true};
  Sgd plain(context, o, {{.offset = 0, .size = 4}}, 4),
      scaled(context, o, {{.offset = 0, .size = 4}}, 4);
  std::vector<float> w1{0.3f, -1.7f, 2.9f, 1e-3f}, w2 = w1;
  const std::vector<float> g{0.0123f, -4.56f, 7.8e-5f, 0.5f};
  std::vector<float> g_scaled = g;
  for (float& v : g_scaled) v *= 65536.0f;
  for (int step = 0; step < 3; ++step) {
    plain.step(Tensor::wrap(w1.data(), Shape{4}),
               Tensor::wrap(const_cast<float*>(g.data()), Shape{4}), 0.1);
    scaled.step(Tensor::wrap(w2.data(), Shape{4}), Tensor::wrap(g_scaled.data(), Shape{4}), 0.1,
                1.0 / 65536.0);
  }
  EXPECT_EQ(w1, w2);
  EXPECT_EQ(plain.momentum_buffer().to_vector(), scaled.momentum_buffer().to_vector());
  EXPECT_THROW(plain.step(Tensor::wrap(w1.data(), Shape{4}),
                          Tensor::wrap(g_scaled.data(), Shape{4}), 0.1, 0.0),
               Error);
}

TEST(Sgd, BadOptionsAndSegmentsThrow) {
  Context context;
  const std::vector<ParamSegment> one{{.offset = 0, .size = 4}};
  EXPECT_THROW(Sgd(context, {.momentum = -0.1}, one, 4), Error);
  EXPECT_THROW(Sgd(context, {.momentum = 0.0, .nesterov = true}, one, 4), Error);
  EXPECT_THROW(Sgd(context, {.dampening = 0.1, .nesterov = true}, one, 4), Error);
  EXPECT_THROW(Sgd(context, {}, one, 5), Error);  // segments do not cover the buffer
  EXPECT_THROW(Sgd(context, {}, {{.offset = 1, .size = 3}}, 4), Error);  // gap at the start
  Sgd sgd(context, {}, one, 4);
  std::vector<float> w(3), g(4);
  EXPECT_THROW(sgd.step(Tensor::wrap(w.data(), Shape{3}), Tensor::wrap(g.data(), Shape{4}), 0.1),
               Error);
}

}  // namespace
}  // namespace convnet
