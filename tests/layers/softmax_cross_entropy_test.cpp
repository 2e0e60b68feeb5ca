#include "layers/softmax_cross_entropy.h"

#include <gtest/gtest.h>

#include <cmath>

#include "tests/testing/test_util.h"

namespace convnet {
namespace {

using testing::all_close;
using testing::gradient_matches;
using testing::random_array;

struct Case {
  const char* label;
  Shape input;  // (N, K)
  double label_smoothing;
};

// Batch 1, K not a multiple of 8, with and without label smoothing.
const Case kCases[] = {
    {"n4_k10", {4, 10}, 0.0},   {"n1_k3_smooth", {1, 3}, 0.1}, {"n7_k100_smooth", {7, 100}, 0.2},
    {"n3_k257", {3, 257}, 0.0}, {"n2_k1", {2, 1}, 0.0},
};

void PrintTo(const Case& c, std::ostream* out) { *out << c.label; }

std::vector<int64_t> random_labels(int64_t n, int64_t k, std::mt19937& rng) {
  std::uniform_int_distribution<int64_t> dist(0, k - 1);
  std::vector<int64_t> labels(n);
  for (auto& label : labels) label = dist(rng);
  return labels;
}

class SoftmaxCrossEntropyTest : public ::testing::TestWithParam<Case> {
 protected:
  Context context_;
  std::mt19937 rng_{1234};
};

// The reference's gradient equals central differences of its loss (bounds in
// tests/testing/test_util.h: the loss is smooth with derivatives of order 1/N
// for logits in [-5, 5], so the truncation error is ~1e-10).
TEST_P(SoftmaxCrossEntropyTest, ReferenceGradientMatchesFiniteDifferences) {
  const Case& c = GetParam();
  const SoftmaxCrossEntropyOptions o{.label_smoothing = c.label_smoothing};
  ref::Array logits = random_array(c.input, rng_, -5.0, 5.0);
  const std::vector<int64_t> labels = random_labels(c.input[0], c.input[1], rng_);
  const auto loss = [&] { return ref::softmax_cross_entropy_forward(o, logits, labels); };
  EXPECT_TRUE(
      gradient_matches(logits, loss, ref::softmax_cross_entropy_backward(o, logits, labels)));
}

// oneDNN (f32) against the double reference fed the same f32-rounded logits.
// oneDNN's logsoftmax uses polynomial exp/log approximations: measured against
// double for K from 1 to 1000 and logits in [-5, 5], every log-probability is
// within 4.3e-6 absolute (1.4e-6 even for K = 1, where it should be exactly 0),
// so the loss, a weighted mean of log-probabilities with weights summing to 1,
// is within 1e-5 absolute, and p = exp(log p) within 1e-5 relative, which
// bounds the gradient (p - target) / N, p <= 1, by 1e-5 absolute. A formula
// error (missing 1/N, smoothing s/K, wrong label) is 1e-3 or more here.
TEST_P(SoftmaxCrossEntropyTest, OnednnMatchesReference) {
  const Case& c = GetParam();
  const SoftmaxCrossEntropyOptions o{.label_smoothing = c.label_smoothing};
  auto loss_layer =
      SoftmaxCrossEntropy::create(context_, std::string("loss_") + c.label, o, c.input);
  Tensor logits = testing::to_tensor(context_, random_array(c.input, rng_, -5.0, 5.0));
  const std::vector<int64_t> labels = random_labels(c.input[0], c.input[1], rng_);
  const ref::Array lr = ref::from_tensor(logits);

  const double loss = loss_layer->forward(logits, labels);
  const double expected = ref::softmax_cross_entropy_forward(o, lr, labels);
  EXPECT_NEAR(loss, expected, 1e-5);

  const ref::Array g = ref::softmax_cross_entropy_backward(o, lr, labels);
  Tensor d = testing::to_tensor(context_, random_array(c.input, rng_));  // garbage to overwrite
  loss_layer->backward(d, GradMode::overwrite);
  EXPECT_TRUE(all_close(d, g, 0, 1e-5));

  // GradMode::accumulate adds onto the existing values.
  Tensor d2 = testing::zeros(context_, c.input);
  d2.fill(1.0f);
  loss_layer->backward(d2, GradMode::accumulate);
  ref::Array g_plus_one = g;
  for (auto& v : g_plus_one.data) v += 1.0;
  EXPECT_TRUE(all_close(d2, g_plus_one, 0, 1e-5));
}

INSTANTIATE_TEST_SUITE_P(Shapes, SoftmaxCrossEntropyTest, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return std::string(info.param.label); });

// K = 3, label smoothing 0.1, targets (1 - 0.1) * onehot + 0.1 / 3:
//   sample 0: logits (1, 2, 3), label 2: log_softmax = (1, 2, 3) - 3.40760596...
//             loss 0.9 * 0.40760596 + (0.1 / 3) * 4.22281789 = 0.50760596
//   sample 1: logits (0, 0, 0), label 0: log_softmax = -log 3 everywhere, loss log 3
//   mean loss 0.80310913; gradient (softmax - target) / 2:
//   sample 0: ((0.09003057, 0.24472847, 0.66524096) - (1/30, 1/30, 28/30)) / 2
//   sample 1: ((1/3, 1/3, 1/3) - (28/30, 1/30, 1/30)) / 2 = (-0.3, 0.15, 0.15)
// oneDNN's log-probabilities err by up to ~5e-6 (see OnednnMatchesReference): bounds 1e-5.
TEST(SoftmaxCrossEntropyValues, TinyCaseWithLabelSmoothingMatchesHandComputation) {
  Context context;
  auto loss_layer =
      SoftmaxCrossEntropy::create(context, "loss", {.label_smoothing = 0.1}, Shape{2, 3});
  ref::Array logits(Shape{2, 3});
  logits.data = {1, 2, 3, 0, 0, 0};
  const double loss = loss_layer->forward(testing::to_tensor(context, logits), {2, 0});
  EXPECT_NEAR(loss, 0.8031091265562453, 1e-5);
  Tensor d = testing::zeros(context, Shape{2, 3});
  loss_layer->backward(d);
  ref::Array expected(Shape{2, 3});
  expected.data = {
      0.02834861991852355, 0.10569756886073213, -0.13404618877925584, -0.3, 0.15, 0.15};
  EXPECT_TRUE(all_close(d, expected, 0, 1e-5));
}

// Logits of +-1000 overflow a naive exp (e^1000 = inf in f32 and double) and
// give log(0) for the smoothed targets. The log-probabilities here are 0 or
// -1000 or -2000 and f32 holds them to an ulp (1.2e-4 at 2000): the loss, ~1e3,
// is within 1e-6 relative; probabilities are 0, 1/2 or 1/3 (p within 1e-5
// relative, as above), so the gradient is within 1e-5.
TEST(SoftmaxCrossEntropyValues, LargeLogitsStayFinite) {
  Context context;
  const SoftmaxCrossEntropyOptions o{.label_smoothing = 0.1};
  auto loss_layer = SoftmaxCrossEntropy::create(context, "loss", o, Shape{3, 3});
  ref::Array logits(Shape{3, 3});
  logits.data = {1000, 0, -1000, 1000, 1000, -1000, -1000, -1000, -1000};
  const std::vector<int64_t> labels{2, 0, 1};
  const double loss = loss_layer->forward(testing::to_tensor(context, logits), labels);
  ASSERT_TRUE(std::isfinite(loss)) << loss;
  const double expected = ref::softmax_cross_entropy_forward(o, logits, labels);
  EXPECT_NEAR(loss, expected, 1e-6 * std::abs(expected));
  Tensor d = testing::zeros(context, Shape{3, 3});
  loss_layer->backward(d);
  for (float v : d.to_vector()) ASSERT_TRUE(std::isfinite(v)) << v;
  EXPECT_TRUE(all_close(d, ref::softmax_cross_entropy_backward(o, logits, labels), 0, 1e-5));
}

// The training metrics: summed loss, top-1/top-5 counts (ties count
// against the label), a non-finite forward counted apart; reset on take.
TEST(SoftmaxCrossEntropyMetrics, AccumulateAcrossForwardsAndReset) {
  Context context;
  const Shape in{3, 6};
  auto loss = SoftmaxCrossEntropy::create(context, "loss", {}, in);
  std::vector<float> z{5, 1, 0, 0, 0, 0,   // label 0: top-1
                       1, 2, 3, 4, 5, 6,   // label 0: last, not top-5
                       2, 2, 2, 2, 2, 2};  // label 3: all tied, not top-1, not top-5
  const Tensor logits = Tensor::wrap(z.data(), in);
  const std::vector<int64_t> labels{0, 0, 3};
  const double mean = loss->forward(logits, labels);
  loss->forward_accumulate(logits, labels);
  loss->forward_accumulate(logits, labels);
  SoftmaxCrossEntropy::Metrics m = loss->take_metrics();
  EXPECT_NEAR(m.loss_sum, 2 * 3 * mean, 1e-12);
  EXPECT_EQ(m.top1, 2);
  EXPECT_EQ(m.top5, 2);
  EXPECT_EQ(m.nonfinite, 0);
  z[7] = std::nanf("");
  loss->forward_accumulate(logits, labels);
  m = loss->take_metrics();
  EXPECT_EQ(m.nonfinite, 1);
  EXPECT_EQ(m.loss_sum, 0.0);
  m = loss->take_metrics();
  EXPECT_EQ(m.top1 + m.top5 + m.nonfinite, 0);
}

TEST(SoftmaxCrossEntropyBadInput, RejectsLabelsOutOfRange) {
  Context context;
  auto loss_layer = SoftmaxCrossEntropy::create(context, "loss", {}, Shape{4, 5});
  Tensor logits = testing::zeros(context, Shape{4, 5});
  EXPECT_THROW(loss_layer->forward(logits, {0, 1, -1, 2}), Error);
  EXPECT_THROW(loss_layer->forward(logits, {0, 1, 2}), Error);  // too few labels
  try {
    loss_layer->forward(logits, {0, 1, 2, 7});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("label 7"), std::string::npos) << message;
    EXPECT_NE(message.find("sample 3"), std::string::npos) << message;
  }
}

TEST(SoftmaxCrossEntropyBadInput, RejectsBadOptionsShapesAndOrder) {
  Context context;
  EXPECT_THROW(SoftmaxCrossEntropy::create(context, "loss", {.label_smoothing = 1.0}, Shape{2, 3}),
               Error);
  EXPECT_THROW(SoftmaxCrossEntropy::create(context, "loss", {.label_smoothing = -0.1}, Shape{2, 3}),
               Error);
  EXPECT_THROW(SoftmaxCrossEntropy::create(context, "loss", {}, Shape{2, 3, 1}), Error);
  EXPECT_THROW(SoftmaxCrossEntropy::create(context, "loss", {}, Shape{0, 3}), Error);
  auto loss_layer = SoftmaxCrossEntropy::create(context, "loss", {}, Shape{2, 3});
  Tensor d = testing::zeros(context, Shape{2, 3});
  EXPECT_THROW(loss_layer->backward(d), Error);  // no forward yet
  EXPECT_THROW(loss_layer->forward(testing::zeros(context, Shape{2, 4}), {0, 1}), Error);
  loss_layer->forward(testing::zeros(context, Shape{2, 3}), {0, 1});
  EXPECT_THROW(loss_layer->backward(testing::zeros(context, Shape{3, 2})), Error);
}

}  // namespace
}  // namespace convnet
