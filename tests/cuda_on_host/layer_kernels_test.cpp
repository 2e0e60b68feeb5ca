// The GPU backend's pooling, SE gate, layout-conversion and elementwise
// kernels run on the host (cuda_on_host.h) against direct double loops, in
// NCHW and NHWC. f32 tolerance: 1e-5 relative to max(1, |value|); bf16
// stores are compared with the host's own bf16 rounding of the same value.
#include <cmath>

#include "layers/cuda/kernels.h"
#include "tests/cuda_on_host/kernel_test_util.h"

namespace convnet::cuda_on_host {
namespace {

using namespace ::convnet::cuda;  // the kernels under test

using LayersOnHost = OnHost;

// 3x3 windows, stride 2, padding 1 over 2x3x7x7: max (argmax = the first
// maximum), its backward (scattered to the argmax), and the average with
// and without the padding in the divisor.
TEST_P(LayersOnHost, PoolingForwardAndBackward) {
  for (bool channels_last : {false, true}) {
    Window2d w{2, 3, 7, 7, 4, 4, 3, 2, 1, channels_last};
    const int64_t planes = w.n * w.c, hw = w.h * w.w, ohw = w.out_h * w.out_w;
    const std::vector<float> x = random_floats(planes * hw, 30);
    const std::vector<float> dy = random_floats(planes * ohw, 31);
    std::vector<float> y(planes * ohw), dx(planes * hw, 0.0f);
    std::vector<int32_t> argmax(planes * ohw);
    max_pool_forward(DType::f32, x.data(), y.data(), argmax.data(), w, nullptr);
    max_pool_backward(DType::f32, dy.data(), argmax.data(), dx.data(), false, w, nullptr);
    std::vector<double> want_y(y.size()), want_dx(dx.size(), 0.0), avg_pad(y.size()),
        avg_inside(y.size());
    for (int64_t s = 0; s < w.n; ++s)
      for (int64_t ch = 0; ch < w.c; ++ch)
        for (int64_t oy = 0; oy < w.out_h; ++oy)
          for (int64_t ox = 0; ox < w.out_w; ++ox) {
            double best = -1e30, sum = 0.0;
            int64_t best_at = -1, inside = 0;
            for (int64_t ky = 0; ky < 3; ++ky)
              for (int64_t kx = 0; kx < 3; ++kx) {
                const int64_t iy = oy * 2 - 1 + ky, ix = ox * 2 - 1 + kx;
                if (iy < 0 || iy >= w.h || ix < 0 || ix >= w.w) continue;
                const double v = x[element(s, ch, iy * w.w + ix, w.c, hw, channels_last)];
                sum += v;
                ++inside;
                if (v > best) best = v, best_at = iy * w.w + ix;
              }
            const int64_t o = element(s, ch, oy * w.out_w + ox, w.c, ohw, channels_last);
            want_y[o] = best;
            EXPECT_EQ(argmax[o], best_at) << o;
            want_dx[element(s, ch, best_at, w.c, hw, channels_last)] += dy[o];
            avg_pad[o] = sum / 9.0;
            avg_inside[o] = sum / static_cast<double>(inside);
          }
    expect_close(y, want_y, "max");
    expect_close(dx, want_dx, "max backward");
    for (bool include_pad : {true, false}) {
      avg_pool_forward(DType::f32, x.data(), y.data(), w, include_pad, nullptr);
      expect_close(y, include_pad ? avg_pad : avg_inside, "avg");
    }
  }
}

TEST_P(LayersOnHost, ChannelGateAndGlobalAveragePool) {
  const int64_t n = 3, c = 5, hw = 6;
  for (bool channels_last : {false, true}) {
    const std::vector<float> x = random_floats(n * c * hw, 32), dy = random_floats(n * c * hw, 33);
    const std::vector<float> s = random_floats(n * c, 34, -3.0f, 3.0f);
    std::vector<float> y(n * c * hw), dx(n * c * hw, 1.0f), ds(n * c, 1.0f), pooled(n * c),
        dpool(n * c * hw, 0.0f);
    channel_gate_forward(DType::f32, x.data(), s.data(), y.data(), n, c, hw, channels_last,
                         nullptr);
    channel_gate_backward(DType::f32, x.data(), s.data(), dy.data(), dx.data(), true, ds.data(),
                          true, n, c, hw, channels_last, nullptr);
    global_avg_pool_forward(DType::f32, x.data(), pooled.data(), n, c, hw, channels_last, nullptr);
    global_avg_pool_backward(DType::f32, s.data(), dpool.data(), n, c, hw, channels_last, true,
                             nullptr);
    std::vector<double> want_y(y.size()), want_dx(dx.size()), want_ds(ds.size()),
        want_pooled(pooled.size()), want_dpool(dpool.size());
    for (int64_t i = 0; i < n; ++i)
      for (int64_t ch = 0; ch < c; ++ch) {
        const int64_t p = i * c + ch;
        const double g = 1.0 / (1.0 + std::exp(-double{s[p]}));
        double sum = 0.0, total = 0.0;
        for (int64_t q = 0; q < hw; ++q) {
          const int64_t e = element(i, ch, q, c, hw, channels_last);
          want_y[e] = x[e] * g;
          want_dx[e] = 1.0 + dy[e] * g;
          want_dpool[e] = s[p] / static_cast<double>(hw);
          sum += double{dy[e]} * x[e];
          total += x[e];
        }
        want_ds[p] = 1.0 + sum * g * (1.0 - g);
        want_pooled[p] = total / static_cast<double>(hw);
      }
    expect_close(y, want_y, "gate");
    expect_close(dx, want_dx, "gate dx");
    expect_close(ds, want_ds, "gate ds");
    expect_close(pooled, want_pooled, "global pool");
    expect_close(dpool, want_dpool, "global pool backward");
  }
}

// NCHW f32 -> NHWC bf16 (the layout and precision change at a mixed
// precision net's input), then back, accumulating.
TEST_P(LayersOnHost, StridedCopyChangesLayoutAndPrecision) {
  const int64_t n = 2, c = 3, h = 5, w = 7;
  const std::vector<float> x = random_floats(n * c * h * w, 35, -8.0f, 8.0f);
  std::vector<__nv_bfloat16> nhwc(x.size());
  Strided4 to_nhwc{{n, c, h, w}, {h * w * c, 1, w * c, c}, {c * h * w, h * w, w, 1}};
  strided_copy(DType::bf16, nhwc.data(), DType::f32, x.data(), to_nhwc, false, nullptr);
  std::vector<float> back(x.size(), 1.0f);
  Strided4 to_nchw{{n, c, h, w}, {c * h * w, h * w, w, 1}, {h * w * c, 1, w * c, c}};
  strided_copy(DType::f32, back.data(), DType::bf16, nhwc.data(), to_nchw, true, nullptr);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t p = 0; p < h * w; ++p) {
        const float v = x[element(i, ch, p, c, h * w, false)];
        const float rounded = __bfloat162float(__float2bfloat16(v));
        ASSERT_EQ(__bfloat162float(nhwc[element(i, ch, p, c, h * w, true)]), rounded);
        ASSERT_EQ(back[element(i, ch, p, c, h * w, false)], 1.0f + rounded);
      }
}

// Elementwise kernels over a length that is no multiple of the block.
TEST_P(LayersOnHost, ElementwiseKernelsCoverEveryElement) {
  const int64_t n = 1000;
  const std::vector<float> a = random_floats(n, 36), b = random_floats(n, 37);
  std::vector<float> sum(n), relu(n), drelu(n, 2.0f), scaled = a;
  add(DType::f32, a.data(), b.data(), sum.data(), n, nullptr);
  relu_forward(DType::f32, a.data(), relu.data(), n, nullptr);
  relu_backward(DType::f32, relu.data(), b.data(), drelu.data(), n, true, nullptr);
  scale(scaled.data(), n, -3.0f, nullptr);
  for (int64_t i = 0; i < n; ++i) {
    ASSERT_EQ(sum[i], a[i] + b[i]);
    ASSERT_EQ(relu[i], std::max(a[i], 0.0f));
    ASSERT_EQ(drelu[i], a[i] > 0.0f ? 2.0f + b[i] : 2.0f);
    ASSERT_EQ(scaled[i], -3.0f * a[i]);
  }
}

// Mixed precision: the bf16 / f16 instantiations compute in f32 from the
// stored values and round once per store, so add, ReLU, max pooling and
// global average pooling match an f32 computation rounded once, bit for bit;
// the SE gate and batch-norm apply (expf, fused multiply-adds) within one
// unit in the last place of the type.
template <typename T>
void check_half_precision(DType t, float ulp) {
  const int64_t n = 2, c = 3, h = 6, w = 6, hw = h * w, count = n * c * hw;
  const std::vector<float> xf = to_float(to_half<T>(random_floats(count, 40, -3.0f, 3.0f)));
  const std::vector<float> bf = to_float(to_half<T>(random_floats(count, 41)));
  const std::vector<float> sf = to_float(to_half<T>(random_floats(n * c, 42, -2.0f, 2.0f)));
  const std::vector<T> x = to_half<T>(xf), b = to_half<T>(bf), s = to_half<T>(sf);
  const auto round = [](float v) { return to_float(to_half<T>({v})[0]); };
  std::vector<T> sum(count), relu(count), gate(count), normed(count), pooled(n * c);
  add(t, x.data(), b.data(), sum.data(), count, nullptr);
  relu_forward(t, x.data(), relu.data(), count, nullptr);
  channel_gate_forward(t, x.data(), s.data(), gate.data(), n, c, hw, false, nullptr);
  global_avg_pool_forward(t, x.data(), pooled.data(), n, c, hw, true, nullptr);
  const std::vector<float> mean = {0.5f, -0.25f, 0.0f}, inv_std = {2.0f, 0.5f, 1.5f},
                           gamma = {1.0f, -2.0f, 0.5f}, beta = {0.0f, 1.0f, -1.0f};
  batch_norm_apply(t, x.data(), mean.data(), inv_std.data(), gamma.data(), beta.data(),
                   normed.data(), n, c, hw, true, false, nullptr);
  for (int64_t i = 0; i < count; ++i) {
    ASSERT_EQ(to_float(sum[i]), round(xf[i] + bf[i])) << i;
    ASSERT_EQ(to_float(relu[i]), std::max(xf[i], 0.0f)) << i;
    const int64_t plane = i / hw, ch = i % c;  // gate: NCHW planes; BN: NHWC channels
    const float g = xf[i] / (1.0f + std::exp(-sf[plane]));
    ASSERT_NEAR(to_float(gate[i]), g, ulp * std::max(std::abs(g), 1e-3f)) << i;
    const float v = gamma[ch] * (xf[i] - mean[ch]) * inv_std[ch] + beta[ch];
    ASSERT_NEAR(to_float(normed[i]), v, ulp * std::max(std::abs(v), 1e-3f)) << i;
  }
  for (int64_t p = 0; p < n * c; ++p) {  // NHWC: plane p = (sample, channel)
    float total = 0.0f;
    for (int64_t q = 0; q < hw; ++q) total += xf[element(p / c, p % c, q, c, hw, true)];
    ASSERT_EQ(to_float(pooled[p]), round(total / static_cast<float>(hw))) << p;
  }
  Window2d window{n, c, h, w, 3, 3, 2, 2, 0, false};
  std::vector<T> maxed(n * c * 9);
  std::vector<int32_t> argmax(maxed.size());
  max_pool_forward(t, x.data(), maxed.data(), argmax.data(), window, nullptr);
  for (size_t o = 0; o < maxed.size(); ++o)
    ASSERT_EQ(to_float(maxed[o]), xf[(o / 9) * hw + argmax[o]]) << o;
}

TEST_P(LayersOnHost, HalfPrecisionKernelsRoundOncePerStore) {
  check_half_precision<__nv_bfloat16>(DType::bf16, 1.0f / 128);  // 8 significand bits
  check_half_precision<__half>(DType::f16, 1.0f / 1024);         // 11 significand bits
}

CONVNET_ON_HOST_ORDERS(LayersOnHost);

}  // namespace
}  // namespace convnet::cuda_on_host
