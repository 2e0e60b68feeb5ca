#include "layers/batch_norm.h"

#include <gtest/gtest.h>

#include <cmath>

#include "tests/testing/test_util.h"

namespace convnet {
namespace {

using testing::all_close;
using testing::dot;
using testing::gradient_matches;
using testing::random_array;

struct Case {
  const char* label;
  Shape input;  // (N, C, H, W)
};

// Batch 1 with spatial > 1, odd spatial sizes, 1x1 spatial, channels not a multiple of 8.
const Case kCases[] = {
    {"c3_5x5", {2, 3, 5, 5}}, {"batch1_c5_7x9", {1, 5, 7, 9}}, {"c12_3x3", {4, 12, 3, 3}},
    {"c8_1x1", {3, 8, 1, 1}}, {"c16_6x5", {2, 16, 6, 5}},
};

void PrintTo(const Case& c, std::ostream* out) { *out << c.label; }

BatchNormOptions options_for(const Shape& input) { return {.channels = input[1]}; }

class BatchNormTest : public ::testing::TestWithParam<Case> {
 protected:
  Context context_;
  std::mt19937 rng_{1234};
};

// The reference's gradients equal central differences of L = <bn(x), r>, in
// training mode through the batch statistics (bounds in tests/testing/test_util.h:
// L is smooth, x_hat = O(1) and 1/sqrt(var + eps) <= 2.3 for these inputs, so the
// truncation error eps^2 * |L'''| stays near 1e-9, below the 1e-7 absolute bound).
TEST_P(BatchNormTest, ReferenceGradientsMatchFiniteDifferences) {
  const Case& c = GetParam();
  const BatchNormOptions o = options_for(c.input);
  const Shape channels{o.channels};
  ref::Array x = random_array(c.input, rng_, -1.0, 2.0);
  ref::Array w = random_array(channels, rng_, 0.5, 1.5);
  ref::Array b = random_array(channels, rng_);
  const ref::Array running_mean = random_array(channels, rng_);
  const ref::Array running_var = random_array(channels, rng_, 0.5, 1.5);
  const ref::Array r = random_array(c.input, rng_);
  for (Mode mode : {Mode::training, Mode::inference}) {
    SCOPED_TRACE(mode == Mode::training ? "training" : "inference");
    const auto loss = [&] {
      return dot(ref::batch_norm_forward(o, mode, x, w, b, running_mean, running_var).y, r);
    };
    const ref::BatchNormForward f =
        ref::batch_norm_forward(o, mode, x, w, b, running_mean, running_var);
    const ref::BatchNormGrads g = ref::batch_norm_backward(o, mode, x, w, r, f.mean, f.var);
    EXPECT_TRUE(gradient_matches(x, loss, g.dx));
    EXPECT_TRUE(gradient_matches(w, loss, g.dweight));
    EXPECT_TRUE(gradient_matches(b, loss, g.dbias));
  }
}

// oneDNN (f32) against the double reference fed the same f32-rounded values.
// Every output is a short expression of per-channel sums of M = N*H*W <= 63
// terms of size <= ~3 (x in [-1, 2], 1/sqrt(var + eps) <= 2.3 for these draws).
// f32 summation errs by ~sqrt(M) * 6e-8 * sum|terms| typically (measured: y,
// dx and running statistics within 4e-7, dweight and dbias within 2e-6); the
// bound rtol 1e-4 + atol 1e-4 leaves room for other thread counts and reduction
// orders, yet stays far below any formula error (biased instead of unbiased
// running variance: a factor M/(M-1) >= 1.016; a dropped mean term: O(1)).
TEST_P(BatchNormTest, OnednnMatchesReference) {
  const Case& c = GetParam();
  const BatchNormOptions o = options_for(c.input);
  auto bn = BatchNorm2d::create(context_, std::string("bn_") + c.label, o, c.input);
  const Shape channels = bn->param_shape();
  Tensor x = testing::to_tensor(context_, random_array(c.input, rng_, -1.0, 2.0));
  Tensor w = testing::to_tensor(context_, random_array(channels, rng_, 0.5, 1.5));
  Tensor b = testing::to_tensor(context_, random_array(channels, rng_));
  Tensor running_mean = testing::to_tensor(context_, random_array(channels, rng_));
  Tensor running_var = testing::to_tensor(context_, random_array(channels, rng_, 0.5, 1.5));
  const ref::Array xr = ref::from_tensor(x), wr = ref::from_tensor(w), br = ref::from_tensor(b);
  const ref::Array rm = ref::from_tensor(running_mean), rv = ref::from_tensor(running_var);

  Tensor y = testing::zeros(context_, c.input);
  bn->forward(Mode::training, x, w, b, running_mean, running_var, y);
  const ref::BatchNormForward f = ref::batch_norm_forward(o, Mode::training, xr, wr, br, rm, rv);
  EXPECT_TRUE(all_close(y, f.y, 1e-4, 1e-4));
  EXPECT_TRUE(all_close(running_mean, f.running_mean, 1e-4, 1e-4));
  EXPECT_TRUE(all_close(running_var, f.running_var, 1e-4, 1e-4));

  Tensor dy = testing::to_tensor(context_, random_array(c.input, rng_));
  const ref::BatchNormGrads g =
      ref::batch_norm_backward(o, Mode::training, xr, wr, ref::from_tensor(dy), f.mean, f.var);

  // Parameter gradients accumulate onto what is there; dx overwrites.
  Tensor dx = testing::to_tensor(context_, random_array(c.input, rng_));  // garbage to overwrite
  Tensor dw = testing::zeros(context_, channels);
  dw.fill(0.5f);
  Tensor db = testing::zeros(context_, channels);
  db.fill(-0.25f);
  bn->backward(x, w, dy, dx, GradMode::overwrite, dw, db);
  EXPECT_TRUE(all_close(dx, g.dx, 1e-4, 1e-4));
  ref::Array dw_expected = g.dweight, db_expected = g.dbias;
  for (auto& v : dw_expected.data) v += 0.5;
  for (auto& v : db_expected.data) v -= 0.25;
  EXPECT_TRUE(all_close(dw, dw_expected, 1e-4, 1e-4));
  EXPECT_TRUE(all_close(db, db_expected, 1e-4, 1e-4));

  // GradMode::accumulate adds dx onto the existing values (a fanned-out input);
  // an undefined dx still accumulates the parameter gradients.
  Tensor dx2 = testing::zeros(context_, c.input);
  dx2.fill(1.0f);
  bn->backward(x, w, dy, dx2, GradMode::accumulate, dw, db);
  ref::Array dx_expected = g.dx;
  for (auto& v : dx_expected.data) v += 1.0;
  EXPECT_TRUE(all_close(dx2, dx_expected, 1e-4, 1e-4));
  bn->backward(x, w, dy, Tensor(), GradMode::overwrite, dw, db);
  // Three backward calls so far, on top of the initial 0.5 and -0.25.
  ref::Array dw_three(channels), db_three(channels);
  for (int64_t i = 0; i < dw_three.numel(); ++i) {
    dw_three[i] = 3 * g.dweight[i] + 0.5;
    db_three[i] = 3 * g.dbias[i] - 0.25;
  }
  EXPECT_TRUE(all_close(dw, dw_three, 1e-4, 1e-4));
  EXPECT_TRUE(all_close(db, db_three, 1e-4, 1e-4));

  // Inference with the updated running statistics; they stay unchanged.
  Tensor y_inf = testing::zeros(context_, c.input);
  bn->forward(Mode::inference, x, w, b, running_mean, running_var, y_inf);
  const ref::Array rm1 = ref::from_tensor(running_mean), rv1 = ref::from_tensor(running_var);
  const ref::BatchNormForward fi =
      ref::batch_norm_forward(o, Mode::inference, xr, wr, br, rm1, rv1);
  EXPECT_TRUE(all_close(y_inf, fi.y, 1e-4, 1e-4));
  EXPECT_TRUE(all_close(running_mean, rm1, 0, 0));
  EXPECT_TRUE(all_close(running_var, rv1, 0, 0));

  // Backward now differentiates the inference forward: running statistics are
  // constants (PyTorch's eval mode). Same bounds as above.
  const ref::BatchNormGrads gi =
      ref::batch_norm_backward(o, Mode::inference, xr, wr, ref::from_tensor(dy), rm1, rv1);
  Tensor dw_inf = testing::zeros(context_, channels), db_inf = testing::zeros(context_, channels);
  bn->backward(x, w, dy, dx, GradMode::overwrite, dw_inf, db_inf);
  EXPECT_TRUE(all_close(dx, gi.dx, 1e-4, 1e-4));
  EXPECT_TRUE(all_close(dw_inf, gi.dweight, 1e-4, 1e-4));
  EXPECT_TRUE(all_close(db_inf, gi.dbias, 1e-4, 1e-4));
}

INSTANTIATE_TEST_SUITE_P(Shapes, BatchNormTest, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return std::string(info.param.label); });

// Two training steps on (N, C, H, W) = (2, 2, 1, 2), so M = 4 values per channel,
// from PyTorch's initial running_mean = 0, running_var = 1 and momentum 0.1.
//   step 1, channel 0: {1, 2, 3, 4}: mean 2.5, unbiased var 5/3
//           channel 1: {-1, 1, 0.5, 0.5}: mean 0.25, unbiased var 2.25/3 = 0.75
//   step 2, channel 0: {0, 0, 2, 6}: mean 2, unbiased var 24/3 = 8
//           channel 1: {2, 2, 2, 2}: mean 2, var 0
// running_mean: {0.25, 0.025} -> {0.9*0.25 + 0.2, 0.9*0.025 + 0.2} = {0.425, 0.2225}
// running_var: {0.9 + 0.1*5/3, 0.9 + 0.075} = {1.0666..., 0.975}
//           -> {0.9*1.0666... + 0.8, 0.9*0.975} = {1.76, 0.8775}
// The values are exact or O(1) with f32 rounding ~1e-7, hence 1e-6 bounds.
TEST(BatchNormRunningStats, TwoTrainingStepsUseTheUnbiasedVariance) {
  Context context;
  const Shape input{2, 2, 1, 2};
  auto bn = BatchNorm2d::create(context, "bn", {.channels = 2}, input);
  Tensor w = testing::zeros(context, Shape{2});
  w.fill(1.0f);
  Tensor b = testing::zeros(context, Shape{2});
  Tensor running_mean = testing::zeros(context, Shape{2});
  Tensor running_var = testing::zeros(context, Shape{2});
  running_var.fill(1.0f);
  Tensor y = testing::zeros(context, input);
  const auto array = [&](std::vector<double> values) {
    ref::Array a(input);
    a.data = std::move(values);
    return testing::to_tensor(context, a);
  };
  const auto channels = [](std::vector<double> values) {
    ref::Array a(Shape{2});
    a.data = std::move(values);
    return a;
  };
  // Flat (N, C, H, W) order: [n0 c0][n0 c1][n1 c0][n1 c1].
  bn->forward(Mode::training, array({1, 2, -1, 1, 3, 4, 0.5, 0.5}), w, b, running_mean, running_var,
              y);
  EXPECT_TRUE(all_close(running_mean, channels({0.25, 0.025}), 1e-6, 1e-6));
  EXPECT_TRUE(all_close(running_var, channels({0.9 + 0.1 * 5.0 / 3.0, 0.975}), 1e-6, 1e-6));
  bn->forward(Mode::training, array({0, 0, 2, 2, 2, 6, 2, 2}), w, b, running_mean, running_var, y);
  EXPECT_TRUE(all_close(running_mean, channels({0.425, 0.2225}), 1e-6, 1e-6));
  EXPECT_TRUE(all_close(running_var, channels({1.76, 0.8775}), 1e-6, 1e-6));
  // Channel 1 of step 2 is constant: normalized to 0 (plus bias 0), not NaN.
  const std::vector<float> out = y.to_vector();
  EXPECT_EQ(out[2], 0.0f);
  EXPECT_EQ(out[7], 0.0f);
}

// Per-step running statistics (models use them): a training forward leaves
// the running statistics alone; one micro-batch per step moves them exactly
// as a per-forward layer does (bit for bit); two micro-batches of a batch
// move them as one forward over the whole batch (within + between variance,
// f32 rounding of sums of O(1) values: 1e-5).
TEST(BatchNormRunningStats, PerStepEqualsOneForwardOverTheStepsMicroBatches) {
  Context context;
  std::mt19937 rng(21);
  const Shape half{2, 3, 3, 3}, whole{4, 3, 3, 3}, channels{3};
  const ref::Array x = random_array(whole, rng, -1.0, 3.0);
  ref::Array first(half), second(half);
  const auto per = static_cast<std::ptrdiff_t>(half.numel());
  std::copy(x.data.begin(), x.data.begin() + per, first.data.begin());
  std::copy(x.data.begin() + per, x.data.end(), second.data.begin());
  Tensor w = testing::zeros(context, channels), b = testing::zeros(context, channels);
  w.fill(1.0f);
  const auto running = [&] {
    std::pair<Tensor, Tensor> r{testing::zeros(context, channels),
                                testing::zeros(context, channels)};
    r.first.fill(0.5f);
    r.second.fill(2.0f);
    return r;
  };
  const auto sums = [&] {
    return BatchStatSums{testing::zeros(context, channels), testing::zeros(context, channels),
                         testing::zeros(context, channels)};
  };
  // Per forward, over the whole batch and over the first half.
  auto [whole_mean, whole_var] = running();
  auto [half_mean, half_var] = running();
  auto whole_bn = BatchNorm2d::create(context, "bn", {.channels = 3}, whole);
  auto half_bn = BatchNorm2d::create(context, "bn", {.channels = 3}, half);
  Tensor y_whole = testing::zeros(context, whole), y = testing::zeros(context, half);
  whole_bn->forward(Mode::training, testing::to_tensor(context, x), w, b, whole_mean, whole_var,
                    y_whole);
  half_bn->forward(Mode::training, testing::to_tensor(context, first), w, b, half_mean, half_var,
                   y);

  const BatchNormOptions step_options{.channels = 3, .running_stats = RunningStats::per_step};
  auto bn = BatchNorm2d::create(context, "bn", step_options, half);
  for (const int64_t micro_batches : {1, 2}) {
    SCOPED_TRACE(micro_batches);
    auto [mean, var] = running();
    const BatchStatSums s = sums();
    for (const ref::Array* part : {&first, &second}) {
      if (part == &second && micro_batches == 1) break;
      bn->forward(Mode::training, testing::to_tensor(context, *part), w, b, mean, var, y);
      EXPECT_EQ(mean.to_vector(), std::vector<float>(3, 0.5f)) << "forward moved the mean";
      EXPECT_EQ(var.to_vector(), std::vector<float>(3, 2.0f)) << "forward moved the variance";
      bn->add_batch_statistics(s);
    }
    bn->update_running_statistics(s, micro_batches, mean, var);
    if (micro_batches == 1) {
      EXPECT_EQ(mean.to_vector(), half_mean.to_vector());
      EXPECT_EQ(var.to_vector(), half_var.to_vector());
    } else {
      const auto array = [&](const Tensor& t) {
        ref::Array a(channels);
        const std::vector<float> v = t.to_vector();
        a.data.assign(v.begin(), v.end());
        return a;
      };
      EXPECT_TRUE(all_close(mean, array(whole_mean), 1e-5, 1e-5));
      EXPECT_TRUE(all_close(var, array(whole_var), 1e-5, 1e-5));
    }
  }
  // The sums belong to per-step layers only.
  EXPECT_THROW(half_bn->add_batch_statistics(sums()), Error);
}

// Inference normalizes with the given running statistics, not the batch's:
// y = w * (x - running_mean) / sqrt(running_var + eps) + b, computed here by hand.
// f32 evaluation of that one expression errs by a few ulp of O(1) values: 1e-5.
TEST(BatchNormInference, UsesRunningStatistics) {
  Context context;
  const Shape input{1, 2, 1, 3};
  auto bn = BatchNorm2d::create(context, "bn", {.channels = 2, .eps = 1e-3}, input);
  const auto tensor = [&](const Shape& shape, std::vector<double> values) {
    ref::Array a(shape);
    a.data = std::move(values);
    return testing::to_tensor(context, a);
  };
  Tensor x = tensor(input, {1, 2, 3, -1, 0, 4});
  Tensor w = tensor(Shape{2}, {2, 0.5});
  Tensor b = tensor(Shape{2}, {0.1, -0.2});
  Tensor running_mean = tensor(Shape{2}, {1.5, -2});
  Tensor running_var = tensor(Shape{2}, {4, 0.25});
  Tensor y = testing::zeros(context, input);
  bn->forward(Mode::inference, x, w, b, running_mean, running_var, y);
  ref::Array expected(input);
  const double x_values[] = {1, 2, 3, -1, 0, 4};
  for (int i = 0; i < 6; ++i) {
    const int c = i / 3;
    const double rm[] = {1.5, -2}, rv[] = {4, 0.25}, wv[] = {2, 0.5}, bv[] = {0.1, -0.2};
    expected[i] = wv[c] * (x_values[i] - rm[c]) / std::sqrt(rv[c] + 1e-3) + bv[c];
  }
  EXPECT_TRUE(all_close(y, expected, 1e-5, 1e-5));
  // Running statistics are inputs only in inference.
  EXPECT_EQ(running_mean.to_vector(), (std::vector<float>{1.5f, -2.0f}));
  EXPECT_EQ(running_var.to_vector(), (std::vector<float>{4.0f, 0.25f}));
}

TEST(BatchNormBadInput, RejectsMiswiringAtConstruction) {
  Context context;
  const BatchNormOptions o{.channels = 3};
  EXPECT_THROW(BatchNorm2d::create(context, "bn", o, Shape{2, 5, 4, 4}), Error);  // channels
  EXPECT_THROW(BatchNorm2d::create(context, "bn", o, Shape{0, 3, 4, 4}), Error);  // zero batch
  EXPECT_THROW(BatchNorm2d::create(context, "bn", o, Shape{2, 3, 4, 0}), Error);  // zero width
  EXPECT_THROW(BatchNorm2d::create(context, "bn", o, Shape{2, 3, 4}), Error);     // rank 3
  EXPECT_THROW(BatchNorm2d::create(context, "bn", {.channels = 3, .eps = 0}, Shape{2, 3, 4, 4}),
               Error);
  EXPECT_THROW(BatchNorm2d::create(context, "bn", {.channels = 3, .eps = -1e-5}, Shape{2, 3, 4, 4}),
               Error);
  EXPECT_THROW(
      BatchNorm2d::create(context, "bn", {.channels = 3, .momentum = 1.5}, Shape{2, 3, 4, 4}),
      Error);
  try {
    BatchNorm2d::create(context, "layer1.0.bn1", o, Shape{2, 5, 8, 8});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("layer1.0.bn1"), std::string::npos) << message;
    EXPECT_NE(message.find("(2, 5, 8, 8)"), std::string::npos) << message;
  }
}

TEST(BatchNormBadInput, SingleValuePerChannelIsRejectedOnlyInTraining) {
  Context context;
  const Shape input{1, 3, 1, 1};
  auto bn = BatchNorm2d::create(context, "head.bn", {.channels = 3}, input);
  Tensor x = testing::zeros(context, input);
  Tensor p = testing::zeros(context, Shape{3});
  Tensor var = testing::zeros(context, Shape{3});
  var.fill(1.0f);
  Tensor y = testing::zeros(context, input);
  try {
    bn->forward(Mode::training, x, p, p, p, var, y);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("head.bn"), std::string::npos) << message;
    EXPECT_NE(message.find("more than 1 value per channel"), std::string::npos) << message;
  }
  EXPECT_NO_THROW(bn->forward(Mode::inference, x, p, p, p, var, y));
}

TEST(BatchNormBadInput, RejectsBackwardBeforeAnyForwardAndWrongShapes) {
  Context context;
  const Shape input{2, 2, 3, 3};
  auto bn = BatchNorm2d::create(context, "bn", {.channels = 2}, input);
  Tensor x = testing::zeros(context, input);
  Tensor p = testing::zeros(context, Shape{2});
  Tensor var = testing::zeros(context, Shape{2});
  var.fill(1.0f);
  Tensor y = testing::zeros(context, input);
  EXPECT_THROW(bn->backward(x, p, y, x, GradMode::overwrite, p, p), Error);  // no forward yet
  EXPECT_THROW(bn->recompute(x, p, p, y), Error);
  Tensor wrong = testing::zeros(context, Shape{2, 2, 3, 4});
  Tensor wrong_c = testing::zeros(context, Shape{3});
  EXPECT_THROW(bn->forward(Mode::training, wrong, p, p, p, var, y), Error);
  EXPECT_THROW(bn->forward(Mode::training, x, p, p, p, var, wrong), Error);
  EXPECT_THROW(bn->forward(Mode::training, x, wrong_c, p, p, var, y), Error);
  EXPECT_THROW(bn->forward(Mode::training, x, p, p, p, Tensor(), y), Error);
}

}  // namespace
}  // namespace convnet
