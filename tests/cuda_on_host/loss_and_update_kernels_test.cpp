// The GPU backend's loss, metrics, SGD and elementwise kernels run on the
// host (cuda_on_host.h) against plain double-precision loops: the launch
// paths (grid-stride loops over every element, the one-block metrics
// reduction, the per-segment weight decay) on top of kernel_math.h's
// formulas. f32 tolerance: 1e-5 relative to max(1, |value|).
#include <cmath>
#include <limits>

#include "layers/cuda/kernels.h"
#include "tests/cuda_on_host/kernel_test_util.h"

namespace convnet::cuda_on_host {
namespace {

using namespace ::convnet::cuda;  // the kernels under test

std::vector<int32_t> random_labels(int64_t n, int64_t k, uint32_t seed) {
  std::mt19937 gen(seed);
  std::vector<int32_t> labels(n);
  for (int32_t& l : labels) l = static_cast<int32_t>(gen() % k);
  return labels;
}

using LossOnHost = OnHost;

// More rows than the block's 256 threads; two non-finite row losses.
TEST_P(LossOnHost, MetricsAddFiniteLossesTopKHitsAndTheNonFiniteFlag) {
  for (int64_t k : {10, 3}) {
    const int64_t n = 300;
    const std::vector<float> logits = random_floats(n * k, 20);  // distinct: no ties
    const std::vector<int32_t> labels = random_labels(n, k, 21);
    std::vector<float> row_loss = random_floats(n, 22, 0.0f, 5.0f);
    row_loss[17] = std::numeric_limits<float>::quiet_NaN();
    row_loss[250] = std::numeric_limits<float>::infinity();
    std::vector<double> metrics = {1.0, 2.0, 3.0, 0.0};
    accumulate_loss_metrics(row_loss.data(), logits.data(), labels.data(), n, k, metrics.data(),
                            nullptr);
    double sum = 1.0, top1 = 2.0, top5 = 3.0;
    for (int64_t r = 0; r < n; ++r) {
      if (std::isfinite(row_loss[r])) sum += row_loss[r];
      int64_t ahead = 0;
      for (int64_t j = 0; j < k; ++j) ahead += logits[r * k + j] > logits[r * k + labels[r]];
      top1 += ahead < 1;
      top5 += ahead < 5;
    }
    EXPECT_NEAR(metrics[0], sum, 1e-5 * sum);
    EXPECT_EQ(metrics[1], top1);
    EXPECT_EQ(metrics[2], top5);
    EXPECT_EQ(metrics[3], 1.0);
  }
}

TEST_P(LossOnHost, SoftmaxCrossEntropyWithLabelSmoothing) {
  const int64_t n = 7, k = 1000;
  const float s = 0.1f;
  const std::vector<float> logits = random_floats(n * k, 23, -4.0f, 4.0f);
  const std::vector<int32_t> labels = random_labels(n, k, 24);
  std::vector<float> row_loss(n), lse(n), dlogits(n * k, 0.5f);
  softmax_cross_entropy_forward(logits.data(), labels.data(), row_loss.data(), lse.data(), n, k, s,
                                nullptr);
  softmax_cross_entropy_backward(logits.data(), labels.data(), lse.data(), dlogits.data(), true, n,
                                 k, s, nullptr);
  std::vector<double> want_loss(n), want_d(n * k);
  for (int64_t r = 0; r < n; ++r) {
    const float* z = logits.data() + r * k;
    double m = z[0], sum_exp = 0.0, sum_z = 0.0;
    for (int64_t j = 0; j < k; ++j) m = std::max(m, double{z[j]});
    for (int64_t j = 0; j < k; ++j) sum_exp += std::exp(z[j] - m), sum_z += z[j];
    const double log_sum = m + std::log(sum_exp);
    want_loss[r] = log_sum - (1.0 - s) * z[labels[r]] - s / k * sum_z;
    for (int64_t j = 0; j < k; ++j)
      want_d[r * k + j] =
          0.5 + (std::exp(z[j] - log_sum) - ((j == labels[r]) * (1.0 - s) + s / k)) / n;
  }
  expect_close(row_loss, want_loss, "row loss");
  expect_close(dlogits, want_d, "dlogits");
}

TEST_P(LossOnHost, NonFiniteFlagSeesTheLastElement) {
  std::vector<float> x = random_floats(3000, 25);
  int32_t flag = 0;
  flag_nonfinite(x.data(), static_cast<int64_t>(x.size()), &flag, nullptr);
  EXPECT_EQ(flag, 0);
  x.back() = -std::numeric_limits<float>::infinity();
  flag_nonfinite(x.data(), static_cast<int64_t>(x.size()), &flag, nullptr);
  EXPECT_EQ(flag, 1);
}

// Stochastic depth's scaled copy, overwriting (in place) and accumulating.
TEST_P(LossOnHost, ScaleCopyOverwritesInPlaceAndAccumulates) {
  std::vector<float> x = random_floats(1500, 31), y = random_floats(1500, 32);
  std::vector<double> in_place(x.size()), accumulated(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    in_place[i] = 1.25 * x[i];
    accumulated[i] = y[i] + 1.25 * 1.25 * x[i];
  }
  const auto n = static_cast<int64_t>(x.size());
  scale_copy(DType::f32, x.data(), x.data(), n, 1.25f, false, nullptr);
  expect_close(x, in_place, "x *= 1.25 in place");
  scale_copy(DType::f32, y.data(), x.data(), n, 1.25f, true, nullptr);
  expect_close(y, accumulated, "y += 1.25 x");
}

// One launch over three weight-decay segments (one of a single element),
// with and without momentum, Nesterov and the first step.
TEST_P(LossOnHost, SgdStepTakesEachSegmentsDecay) {
  const int64_t n = 1000;
  const std::vector<int64_t> ends = {300, 301, 1000};
  const std::vector<float> decays = {1e-4f, 0.0f, 5e-4f};
  const float lr = 0.1f, momentum = 0.9f, keep = 0.75f, grad_scale = 0.5f;
  for (bool with_momentum : {true, false})
    for (bool nesterov : {false, true})
      for (bool first : {true, false}) {
        std::vector<float> w = random_floats(n, 26), v = random_floats(n, 27);
        const std::vector<float> g = random_floats(n, 28);
        std::vector<double> want_w(n), want_v(n);
        for (int64_t i = 0; i < n; ++i) {
          const double decay = decays[i < 300 ? 0 : i < 301 ? 1 : 2];
          double d = grad_scale * double{g[i]} + decay * w[i];
          want_v[i] = v[i];
          if (with_momentum) {
            want_v[i] = first ? d : momentum * double{v[i]} + keep * d;
            d = nesterov ? d + momentum * want_v[i] : want_v[i];
          }
          want_w[i] = w[i] - lr * d;
        }
        sgd_step_segments(w.data(), g.data(), with_momentum ? v.data() : nullptr, n, ends.data(),
                          decays.data(), static_cast<int64_t>(ends.size()), lr, momentum, keep,
                          first, nesterov, grad_scale, nullptr);
        expect_close(w, want_w, "w");
        expect_close(v, want_v, "v");
      }
}

CONVNET_ON_HOST_ORDERS(LossOnHost);

}  // namespace
}  // namespace convnet::cuda_on_host
