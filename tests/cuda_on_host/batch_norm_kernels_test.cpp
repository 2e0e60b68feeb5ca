// The GPU backend's own batch-norm and per-channel-sum kernels, run on the
// host (cuda_on_host.h) against double-precision sums: one block per channel
// (NCHW) and the channels-last tiles with per-group partial sums (NHWC).
// Tolerance: 1e-4 relative to max(1, |value|) for f32 sums over up to 8,000
// terms; bf16 / f16 inputs are compared against the same rounded values.
#include <cmath>
#include <string>

#include "layers/cuda/kernels.h"
#include "tests/cuda_on_host/kernel_test_util.h"

namespace convnet::cuda_on_host {
namespace {

using namespace ::convnet::cuda;  // the kernels under test

struct Shape {
  int64_t n, c, hw;
  int64_t count() const { return n * c * hw; }
};

const Shape kShapes[] = {{2, 70, 50}, {8, 3, 1000}, {3, 40, 1}, {1, 33, 7}};

// "NxCxHW nchw" or "... nhwc", for traces.
std::string describe(const Shape& s, bool channels_last) {
  return std::to_string(s.n) + "x" + std::to_string(s.c) + "x" + std::to_string(s.hw) +
         (channels_last ? " nhwc" : " nchw");
}

// Per-channel statistics of x in double.
struct Stats {
  std::vector<double> mean, var;
};

Stats stats_of(const std::vector<float>& x, const Shape& s, bool channels_last) {
  Stats st{std::vector<double>(s.c, 0.0), std::vector<double>(s.c, 0.0)};
  const double m = static_cast<double>(s.n * s.hw);
  for (int64_t ch = 0; ch < s.c; ++ch) {
    for (int64_t i = 0; i < s.n; ++i)
      for (int64_t p = 0; p < s.hw; ++p)
        st.mean[ch] += x[element(i, ch, p, s.c, s.hw, channels_last)];
    st.mean[ch] /= m;
    for (int64_t i = 0; i < s.n; ++i)
      for (int64_t p = 0; p < s.hw; ++p) {
        const double d = x[element(i, ch, p, s.c, s.hw, channels_last)] - st.mean[ch];
        st.var[ch] += d * d;
      }
    st.var[ch] /= m;
  }
  return st;
}

using BatchNormOnHost = OnHost;

TEST_P(BatchNormOnHost, StatisticsAndRunningAveragesMatchDoubleSums) {
  const double eps = 1e-5, momentum = 0.1;
  for (const Shape& s : kShapes)
    for (bool channels_last : {false, true})
      for (DType t : {DType::f32, DType::bf16, DType::f16}) {
        SCOPED_TRACE(describe(s, channels_last) + " " + to_string(t));
        std::vector<float> x = random_floats(s.count(), 1, -2.0f, 3.0f);
        const std::vector<__nv_bfloat16> xb = to_half<__nv_bfloat16>(x);
        const std::vector<__half> xh = to_half<__half>(x);
        if (t == DType::bf16) x = to_float(xb);
        if (t == DType::f16) x = to_float(xh);
        const void* data = t == DType::bf16  ? static_cast<const void*>(xb.data())
                           : t == DType::f16 ? static_cast<const void*>(xh.data())
                                             : x.data();
        std::vector<float> mean(s.c), inv_std(s.c), running_mean(s.c, 0.5f), running_var(s.c, 2.0f);
        std::vector<float> scratch(batch_norm_scratch_floats(s.c), -7.0f);
        batch_norm_statistics(t, data, mean.data(), inv_std.data(), running_mean.data(),
                              running_var.data(), s.n, s.c, s.hw, channels_last, eps, momentum,
                              scratch.data(), nullptr);
        const Stats want = stats_of(x, s, channels_last);
        const double m = static_cast<double>(s.n * s.hw);
        std::vector<double> want_inv(s.c), want_rm(s.c), want_rv(s.c);
        for (int64_t ch = 0; ch < s.c; ++ch) {
          want_inv[ch] = 1.0 / std::sqrt(want.var[ch] + eps);
          want_rm[ch] = 0.9 * 0.5 + 0.1 * want.mean[ch];
          want_rv[ch] = 0.9 * 2.0 + 0.1 * (m > 1 ? want.var[ch] * m / (m - 1) : want.var[ch]);
        }
        expect_close(mean, want.mean, "mean", 1e-4);
        expect_close(inv_std, want_inv, "inv_std", 1e-4);
        expect_close(running_mean, want_rm, "running_mean", 1e-4);
        expect_close(running_var, want_rv, "running_var", 1e-4);
      }
}

// dgamma, dbeta and dx of the training-mode backward (batch statistics), and
// of the inference-mode backward (fixed statistics), against double sums.
TEST_P(BatchNormOnHost, BackwardMatchesDoubleSums) {
  for (const Shape& s : kShapes)
    for (bool channels_last : {false, true})
      for (bool batch_stats : {true, false})
        for (bool with_dx : {true, false}) {
          SCOPED_TRACE(describe(s, channels_last) + (batch_stats ? " batch" : " fixed") +
                       (with_dx ? " dx" : " no dx"));
          const std::vector<float> x = random_floats(s.count(), 2, -2.0f, 3.0f);
          const std::vector<float> dy = random_floats(s.count(), 3);
          const std::vector<float> gamma = random_floats(s.c, 4, 0.5f, 1.5f);
          const Stats st = stats_of(x, s, channels_last);
          std::vector<float> mean(s.c), inv_std(s.c);
          for (int64_t ch = 0; ch < s.c; ++ch) {
            mean[ch] = static_cast<float>(st.mean[ch]);
            inv_std[ch] = static_cast<float>(1.0 / std::sqrt(st.var[ch] + 1e-5));
          }
          std::vector<float> dgamma(s.c, 0.25f), dbeta(s.c, -0.5f), dx(s.count(), 1.0f);
          std::vector<float> scratch(batch_norm_scratch_floats(s.c), -7.0f);
          float* dx_out = with_dx ? dx.data() : nullptr;
          if (batch_stats)
            batch_norm_backward_batch_stats(DType::f32, x.data(), dy.data(), mean.data(),
                                            inv_std.data(), gamma.data(), dx_out, true,
                                            dgamma.data(), dbeta.data(), s.n, s.c, s.hw,
                                            channels_last, scratch.data(), nullptr);
          else
            batch_norm_backward_fixed_stats(
                DType::f32, x.data(), dy.data(), mean.data(), inv_std.data(), gamma.data(), dx_out,
                true, dgamma.data(), dbeta.data(), s.n, s.c, s.hw, channels_last, nullptr);
          std::vector<double> want_dgamma(s.c), want_dbeta(s.c), want_dx(s.count(), 1.0);
          const double m = static_cast<double>(s.n * s.hw);
          for (int64_t ch = 0; ch < s.c; ++ch) {
            double sum_dy = 0.0, sum_dy_xhat = 0.0;
            for (int64_t i = 0; i < s.n; ++i)
              for (int64_t p = 0; p < s.hw; ++p) {
                const int64_t e = element(i, ch, p, s.c, s.hw, channels_last);
                sum_dy += dy[e];
                sum_dy_xhat += dy[e] * (x[e] - double{mean[ch]}) * inv_std[ch];
              }
            want_dgamma[ch] = 0.25 + sum_dy_xhat;
            want_dbeta[ch] = -0.5 + sum_dy;
            for (int64_t i = 0; i < s.n; ++i)
              for (int64_t p = 0; p < s.hw; ++p) {
                const int64_t e = element(i, ch, p, s.c, s.hw, channels_last);
                const double xhat = (x[e] - double{mean[ch]}) * inv_std[ch];
                const double g = batch_stats ? dy[e] - sum_dy / m - xhat * sum_dy_xhat / m : dy[e];
                if (with_dx) want_dx[e] += double{gamma[ch]} * inv_std[ch] * g;
              }
          }
          expect_close(dgamma, want_dgamma, "dgamma", 1e-4);
          expect_close(dbeta, want_dbeta, "dbeta", 1e-4);
          expect_close(dx, want_dx, "dx", 1e-4);
        }
}

TEST_P(BatchNormOnHost, ApplyWithReluAndItsMask) {
  const Shape s{2, 5, 9};
  for (bool channels_last : {false, true}) {
    const std::vector<float> x = random_floats(s.count(), 5, -2.0f, 2.0f);
    const std::vector<float> dy = random_floats(s.count(), 6);
    const std::vector<float> mean = random_floats(s.c, 7),
                             inv_std = random_floats(s.c, 8, 0.5f, 2.0f),
                             gamma = random_floats(s.c, 9), beta = random_floats(s.c, 10);
    std::vector<float> y(s.count()), masked(s.count());
    batch_norm_apply(DType::f32, x.data(), mean.data(), inv_std.data(), gamma.data(), beta.data(),
                     y.data(), s.n, s.c, s.hw, channels_last, true, nullptr);
    batch_norm_relu_mask(DType::f32, x.data(), mean.data(), inv_std.data(), gamma.data(),
                         beta.data(), dy.data(), masked.data(), s.n, s.c, s.hw, channels_last,
                         nullptr);
    for (int64_t i = 0; i < s.n; ++i)
      for (int64_t ch = 0; ch < s.c; ++ch)
        for (int64_t p = 0; p < s.hw; ++p) {
          const int64_t e = element(i, ch, p, s.c, s.hw, channels_last);
          const double v = double{gamma[ch]} * (x[e] - mean[ch]) * inv_std[ch] + beta[ch];
          EXPECT_NEAR(y[e], std::max(v, 0.0), 1e-5);
          EXPECT_EQ(masked[e], v > 0.0 ? dy[e] : 0.0f) << e;
        }
  }
}

TEST_P(BatchNormOnHost, ChannelSumsAccumulateOverSamplesAndPositions) {
  for (const Shape& s : kShapes)
    for (bool channels_last : {false, true}) {
      const std::vector<float> dy = random_floats(s.count(), 11);
      std::vector<float> sums(s.c, 1.0f);
      accumulate_channel_sums(DType::f32, dy.data(), sums.data(), s.n, s.c, s.hw, channels_last,
                              nullptr);
      std::vector<double> want(s.c, 1.0);
      for (int64_t i = 0; i < s.n; ++i)
        for (int64_t ch = 0; ch < s.c; ++ch)
          for (int64_t p = 0; p < s.hw; ++p)
            want[ch] += dy[element(i, ch, p, s.c, s.hw, channels_last)];
      expect_close(sums, want, channels_last ? "nhwc sums" : "nchw sums", 1e-4);
    }
}

// The channels-last partial sums are added in a fixed order: two runs (and
// the two scheduling orders) give the same bits.
TEST_P(BatchNormOnHost, ChannelsLastStatisticsAreDeterministic) {
  const Shape s{16, 96, 300};
  const std::vector<float> x = random_floats(s.count(), 12);
  std::vector<float> scratch(batch_norm_scratch_floats(s.c));
  auto run = [&](Order order) {
    set_order(order);
    std::vector<float> mean(s.c), inv_std(s.c), rm(s.c, 0.0f), rv(s.c, 1.0f);
    batch_norm_statistics(DType::f32, x.data(), mean.data(), inv_std.data(), rm.data(), rv.data(),
                          s.n, s.c, s.hw, true, 1e-5, 0.1, scratch.data(), nullptr);
    mean.insert(mean.end(), inv_std.begin(), inv_std.end());
    return mean;
  };
  const std::vector<float> first = run(GetParam());
  EXPECT_EQ(run(GetParam()), first);
  for (Order other : {Order::forward, Order::reverse, Order::warp_greedy})
    EXPECT_EQ(run(other), first) << order_name(other);
}

// Per-step running statistics: the kernels' sums and update are those of
// layers/running_stats.h (the CPU layer's), from the batch means and the
// unbiased variances cuDNN leaves with factor 1: the step's variance over two
// micro-batches of 10 values per channel, within + between, moved by 0.1.
TEST_P(BatchNormOnHost, StepUpdateOfTwoMicroBatches) {
  const int64_t c = 3, m = 10;
  std::vector<float> sum_mean(c, 0), sum_var(c, 0), sum_sq(c, 0);
  const std::vector<float> means[2] = {{1, -2, 0}, {3, -2, 0.5f}};
  const std::vector<float> biased[2] = {{1, 4, 0}, {2, 4, 1}};
  for (int k = 0; k < 2; ++k) {
    std::vector<float> unbiased(c);
    for (int64_t i = 0; i < c; ++i) unbiased[i] = biased[k][i] * m / (m - 1);
    batch_norm_add_statistics(means[k].data(), unbiased.data(), m, sum_mean.data(), sum_var.data(),
                              sum_sq.data(), c, nullptr);
  }
  std::vector<float> rm(c, 0.0f), rv(c, 1.0f);
  batch_norm_step_update(sum_mean.data(), sum_var.data(), sum_sq.data(), 2, m, 0.1, rm.data(),
                         rv.data(), c, nullptr);
  std::vector<double> want_mean(c), want_var(c);
  for (int64_t i = 0; i < c; ++i) {
    const double mean = (means[0][i] + means[1][i]) / 2.0;
    const double between = ((means[0][i] - mean) * (means[0][i] - mean) +
                            (means[1][i] - mean) * (means[1][i] - mean)) /
                           2.0;
    const double var = (biased[0][i] + biased[1][i]) / 2.0 + between;
    want_mean[i] = 0.1 * mean;
    want_var[i] = 0.9 + 0.1 * var * 20.0 / 19.0;
  }
  expect_close(rm, want_mean, "running mean", 1e-5);
  expect_close(rv, want_var, "running variance", 1e-5);
}

CONVNET_ON_HOST_ORDERS(BatchNormOnHost);

}  // namespace
}  // namespace convnet::cuda_on_host
