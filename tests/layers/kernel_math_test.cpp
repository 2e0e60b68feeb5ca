// The GPU kernels' arithmetic (layers/cuda/kernel_math.h), run in host loops
// exactly as layers/cuda/*.cu run it per GPU thread, against the CPU layers on the
// same inputs. This checks the index arithmetic and formulas of every custom
// GPU kernel on machines without a GPU; tests/gpu checks the launches.
#include "layers/cuda/kernel_math.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "layers/avg_pool2d.h"
#include "layers/channel_gate.h"
#include "layers/global_avg_pool.h"
#include "layers/max_pool2d.h"
#include "layers/sgd.h"
#include "layers/softmax_cross_entropy.h"

namespace convnet {
namespace {

namespace math = cuda::math;

class KernelMath : public ::testing::Test {
 protected:
  // Distinct values in random order (no ties in a pooling window).
  Tensor random(const Shape& shape, float lo = -1.0f, float hi = 1.0f) {
    Tensor t = Tensor::empty(shape, context_.allocator());
    std::vector<float> v(static_cast<std::size_t>(t.numel()));
    for (std::size_t i = 0; i < v.size(); ++i)
      v[i] = lo + (hi - lo) * static_cast<float>(i) / static_cast<float>(v.size());
    std::shuffle(v.begin(), v.end(), rng_);
    std::copy(v.begin(), v.end(), t.data<float>());
    return t;
  }
  Tensor copy(const Tensor& t) {
    Tensor c = Tensor::empty(t.shape(), context_.allocator());
    c.copy_from(t);
    return c;
  }
  Tensor zeros(const Shape& shape) { return Tensor::zeros(shape, context_.allocator()); }
  // The same logical values stored NCHW or NHWC (the kernels index raw memory).
  Tensor in_layout(const Tensor& t, bool channels_last) {
    Tensor c = Tensor::empty(t.shape(), context_.allocator(), DType::f32,
                             channels_last ? Layout::nhwc : Layout::nchw);
    c.copy_from(t);
    return c;
  }
  static void expect_close(const Tensor& actual, const Tensor& expected, float tol = 1e-5f) {
    const std::vector<float> a = actual.to_vector(), e = expected.to_vector();
    ASSERT_EQ(a.size(), e.size());
    for (std::size_t i = 0; i < a.size(); ++i)
      ASSERT_NEAR(a[i], e[i], tol * std::max(1.0f, std::abs(e[i]))) << "element " << i;
  }

  Context context_;
  std::mt19937 rng_{42};
};

cuda::Window2d window(const Shape& in, const Shape& out, int64_t k, int64_t s, int64_t p,
                      bool channels_last) {
  return {in[0], in[1], in[2], in[3], out[2], out[3], k, s, p, channels_last};
}

TEST_F(KernelMath, StridedCopyIntoAChannelSliceAndSubsample) {
  // dst = channels [2, 5) of a (2, 7, 3, 4) buffer; src = x[:, :, ::2, ::2] of (2, 3, 6, 8).
  Tensor big = random(Shape{2, 7, 3, 4}), x = random(Shape{2, 3, 6, 8});
  const Tensor before = copy(big);
  const cuda::Strided4 l{{2, 3, 3, 4}, {7 * 12, 12, 4, 1}, {3 * 48, 48, 16, 2}};
  for (int64_t i = 0; i < 2 * 3 * 3 * 4; ++i)
    math::strided_copy(i, big.data<float>() + 2 * 12, x.data<float>(), l, true);
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t c = 0; c < 7; ++c)
      for (int64_t h = 0; h < 3; ++h)
        for (int64_t w = 0; w < 4; ++w) {
          const float added = c >= 2 && c < 5 ? x.at({n, c - 2, 2 * h, 2 * w}) : 0.0f;
          ASSERT_EQ(big.at({n, c, h, w}), before.at({n, c, h, w}) + added);
        }
}

TEST_F(KernelMath, MaxPoolForwardAndBackwardMatchTheCpuLayer) {
  for (bool cl : {false, true})
    for (const auto& [in, k, s, p, ceil] :
         std::vector<std::tuple<Shape, int64_t, int64_t, int64_t, bool>>{
             {{2, 3, 11, 10}, 3, 2, 1, false},
             {{1, 4, 7, 9}, 2, 2, 0, false},
             {{2, 2, 6, 6}, 3, 1, 1, false},
             {{2, 3, 8, 10}, 3, 2, 0, true},
             {{1, 2, 5, 6}, 2, 2, 1, true}}) {
      MaxPool2dOptions o;
      o.kernel = k;
      o.stride = s;
      o.padding = p;
      o.ceil_mode = ceil;
      auto layer = MaxPool2d::create(context_, "pool", o, in);
      const Shape out = layer->output_shape();
      const Tensor x = random(in), dy = random(out);
      Tensor y = zeros(out), dx = random(in);
      Tensor ky = in_layout(zeros(out), cl), kdx = in_layout(dx, cl);
      const Tensor kx = in_layout(x, cl), kdy = in_layout(dy, cl);
      layer->forward(Mode::training, x, y);
      layer->backward(dy, dx, GradMode::accumulate);
      std::vector<int32_t> argmax(static_cast<std::size_t>(out.numel()));
      const cuda::Window2d w = window(in, out, k, s, p, cl);
      for (int64_t i = 0; i < out.numel(); ++i)
        math::max_pool_forward(i, kx.data<float>(), ky.data<float>(), argmax.data(), w);
      for (int64_t i = 0; i < in.numel(); ++i)
        math::max_pool_backward(i, kdy.data<float>(), argmax.data(), kdx.data<float>(), true, w);
      expect_close(ky, y);
      expect_close(kdx, dx);
    }
}

TEST_F(KernelMath, AvgPoolBothPaddingModesMatchTheCpuLayer) {
  for (bool include_pad : {true, false}) {
    const Shape in{2, 3, 9, 8};
    AvgPool2dOptions o;
    o.kernel = 3;
    o.stride = 2;
    o.padding = 1;
    o.count_include_pad = include_pad;
    auto layer = AvgPool2d::create(context_, "pool", o, in);
    const Shape out = layer->output_shape();
    const Tensor x = random(in), dy = random(out);
    Tensor y = zeros(out), dx = zeros(in), ky = zeros(out), kdx = random(in);
    layer->forward(x, y);
    layer->backward(dy, dx, GradMode::overwrite);
    const cuda::Window2d w = window(in, out, 3, 2, 1, false);
    for (int64_t i = 0; i < out.numel(); ++i)
      math::avg_pool_forward(i, x.data<float>(), ky.data<float>(), w, include_pad);
    for (int64_t i = 0; i < in.numel(); ++i)
      math::avg_pool_backward(i, dy.data<float>(), kdx.data<float>(), false, w, include_pad);
    expect_close(ky, y);
    expect_close(kdx, dx);
  }
}

TEST_F(KernelMath, GlobalAvgPoolAndChannelGateMatchTheCpuLayers) {
  for (bool cl : {false, true}) {
    SCOPED_TRACE(cl ? "nhwc" : "nchw");
    const Shape in{3, 5, 4, 6}, nc{3, 5};
    const int64_t planes = 15, c = 5, hw = 24;
    auto gap = GlobalAvgPool::create(context_, "gap", in);
    const Tensor x = random(in), dy = random(nc);
    Tensor y = zeros(nc), dx = random(in), ky = zeros(nc), kdx = in_layout(dx, cl);
    const Tensor kx = in_layout(x, cl);
    gap->forward(x, y);
    gap->backward(dy, dx, GradMode::accumulate);
    for (int64_t p = 0; p < planes; ++p)
      math::global_avg_pool_forward(p, kx.data<float>(), ky.data<float>(), c, hw, cl);
    for (int64_t i = 0; i < in.numel(); ++i)
      math::global_avg_pool_backward(i, dy.data<float>(), kdx.data<float>(), c, hw, cl, true);
    expect_close(ky, y);
    expect_close(kdx, dx);

    auto gate = ChannelGate::create(context_, "gate", in, nc);
    const Tensor s = random(nc, -3.0f, 3.0f), dz = random(in);
    Tensor z = zeros(in), kz = in_layout(zeros(in), cl), dxg = random(in), ds = random(nc);
    Tensor kdxg = in_layout(dxg, cl), kds = copy(ds);
    const Tensor kdz = in_layout(dz, cl);
    gate->forward(x, s, z);
    gate->backward(x, s, dz, dxg, GradMode::overwrite, ds, GradMode::accumulate);
    for (int64_t i = 0; i < in.numel(); ++i)
      math::channel_gate_forward(i, kx.data<float>(), s.data<float>(), kz.data<float>(), c, hw, cl);
    for (int64_t p = 0; p < planes; ++p)
      math::channel_gate_backward(p, kx.data<float>(), s.data<float>(), kdz.data<float>(),
                                  kdxg.data<float>(), false, kds.data<float>(), true, c, hw, cl);
    expect_close(kz, z);
    expect_close(kdxg, dxg);
    expect_close(kds, ds);
  }
}

// A host stand-in for __nv_bfloat16: the upper 16 bits of an f32, rounded to
// nearest even, with only the conversions the GPU type has. Running the
// kernels' arithmetic on it checks that every read converts to float
// (anything else does not compile) and that results are rounded once.
struct HostBf16 {
  uint16_t bits = 0;
  HostBf16() = default;
  HostBf16(float f) {  // NOLINT: implicit, as __nv_bfloat16(float)
    uint32_t u;
    std::memcpy(&u, &f, 4);
    u += 0x7fffu + ((u >> 16) & 1u);
    bits = static_cast<uint16_t>(u >> 16);
  }
  explicit operator float() const {
    const uint32_t u = static_cast<uint32_t>(bits) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
};

TEST(KernelMathBf16, RoundsToNearestEvenOnce) {
  EXPECT_EQ(static_cast<float>(HostBf16(1.0f + 1.0f / 512)), 1.0f);  // a tie: to even
  EXPECT_EQ(static_cast<float>(HostBf16(1.0f + 3.0f / 512)), 1.0f + 4.0f / 512);
  HostBf16 acc(1.0f);
  math::store(&acc, 1.0f / 1024, true);  // 1 + 2^-10 rounds back to 1
  EXPECT_EQ(static_cast<float>(acc), 1.0f);
}

TEST_F(KernelMath, Bf16ActivationsMatchTheCpuLayersToBf16Rounding) {
  const Shape in{3, 5, 4, 6}, nc{3, 5};
  const int64_t c = 5, hw = 24;
  const Tensor x = random(in), s = random(nc, -3.0f, 3.0f);
  auto to_bf16 = [](const Tensor& t) {
    std::vector<HostBf16> v;
    for (float f : t.to_vector()) v.emplace_back(f);
    return v;
  };
  auto rounded = [&](const std::vector<HostBf16>& v, const Shape& shape) {
    Tensor t = zeros(shape);
    for (std::size_t i = 0; i < v.size(); ++i) t.data<float>()[i] = static_cast<float>(v[i]);
    return t;
  };
  const std::vector<HostBf16> bx = to_bf16(x), bs = to_bf16(s);
  const Tensor rx = rounded(bx, in), rs = rounded(bs, nc);
  std::vector<HostBf16> by(static_cast<std::size_t>(nc.numel())), bz(bx.size());
  for (int64_t p = 0; p < nc.numel(); ++p)
    math::global_avg_pool_forward(p, bx.data(), by.data(), c, hw, false);
  for (int64_t i = 0; i < in.numel(); ++i)
    math::channel_gate_forward(i, bx.data(), bs.data(), bz.data(), c, hw, false);
  Tensor y = zeros(nc), z = zeros(in);
  GlobalAvgPool::create(context_, "gap", in)->forward(rx, y);
  ChannelGate::create(context_, "gate", in, nc)->forward(rx, rs, z);
  expect_close(rounded(by, nc), y, 1.0f / 256);  // one bf16 rounding: 2^-9 relative
  expect_close(rounded(bz, in), z, 1.0f / 256);
}

TEST_F(KernelMath, SoftmaxCrossEntropyWithSmoothingMatchesTheCpuLayer) {
  const int64_t n = 5, k = 7;
  SoftmaxCrossEntropyOptions o;
  o.label_smoothing = 0.1;
  auto layer = SoftmaxCrossEntropy::create(context_, "loss", o, Shape{n, k});
  const Tensor z = random(Shape{n, k}, -4.0f, 4.0f);
  const std::vector<int64_t> labels{0, 6, 3, 3, 1};
  const std::vector<int32_t> labels32(labels.begin(), labels.end());
  const double loss = layer->forward(z, labels);
  Tensor dz = random(Shape{n, k}), kdz = copy(dz);
  layer->backward(dz, GradMode::accumulate);
  std::vector<float> row_loss(n), lse(n);
  for (int64_t r = 0; r < n; ++r)
    math::softmax_cross_entropy_forward(r, z.data<float>(), labels32.data(), row_loss.data(),
                                        lse.data(), k, 0.1f);
  double sum = 0.0;
  for (float v : row_loss) sum += v;
  EXPECT_NEAR(sum / n, loss, 1e-5);
  for (int64_t i = 0; i < n * k; ++i)
    math::softmax_cross_entropy_backward(i, z.data<float>(), labels32.data(), lse.data(),
                                         kdz.data<float>(), true, n, k, 0.1f);
  expect_close(kdz, dz);
}

TEST_F(KernelMath, SgdNesterovMatchesTheCpuOptimizer) {
  SgdOptions o;
  o.momentum = 0.9;
  o.nesterov = true;
  o.weight_decay = 0.01;
  Sgd sgd(context_, o, {{0, 64, true}}, 64);
  Tensor w = random(Shape{64}), kw = copy(w), v = zeros(Shape{64});
  for (int step = 0; step < 3; ++step) {
    const Tensor g = random(Shape{64});
    sgd.step(w, g, 0.1);
    for (int64_t i = 0; i < 64; ++i)
      math::sgd_step(i, kw.data<float>(), g.data<float>(), v.data<float>(), 0.1f, 0.9f, 1.0f, 0.01f,
                     step == 0, true);
  }
  expect_close(kw, w);
  expect_close(v, sgd.momentum_buffer());
}

TEST_F(KernelMath, SegmentOfFindsTheSegmentHoldingAnElement) {
  const int64_t ends[] = {3, 4, 10, 64};
  const int64_t expected[] = {0, 0, 0, 1, 2, 2, 2, 2, 2, 2, 3};
  for (int64_t i = 0; i < 11; ++i) EXPECT_EQ(math::segment_of(i, ends, 4), expected[i]) << i;
  EXPECT_EQ(math::segment_of(63, ends, 4), 3);
  const int64_t one[] = {5};
  for (int64_t i = 0; i < 5; ++i) EXPECT_EQ(math::segment_of(i, one, 1), 0);
}

TEST_F(KernelMath, BatchNormWithGivenStatistics) {
  const int64_t n = 2, c = 3, hw = 5;
  const Tensor x = random(Shape{n, c, hw}), dy = random(Shape{n, c, hw});
  const float mean[] = {0.1f, -0.2f, 0.3f}, inv_std[] = {2.0f, 0.5f, 1.5f};
  const float gamma[] = {1.0f, -0.5f, 2.0f}, beta[] = {0.0f, 0.25f, -0.5f};
  for (int64_t i = 0; i < n * c * hw; ++i) {
    const int64_t ch = (i / hw) % c;
    const float expected = gamma[ch] * (x.data<float>()[i] - mean[ch]) * inv_std[ch] + beta[ch];
    ASSERT_FLOAT_EQ(
        math::batch_norm_value(x.data<float>(), mean, inv_std, gamma, beta, i, c, hw, false),
        expected);
  }
  // NHWC: the same logical element (n, ch, p) sits at (n * hw + p) * c + ch.
  for (int64_t i = 0; i < n * c * hw; ++i) {
    const int64_t ch = i % c, p = (i / c) % hw, b = i / (c * hw);
    const float xv = x.data<float>()[(b * c + ch) * hw + p];
    std::vector<float> nhwc(static_cast<std::size_t>(n * c * hw));
    nhwc[static_cast<std::size_t>(i)] = xv;
    ASSERT_FLOAT_EQ(math::batch_norm_value(nhwc.data(), mean, inv_std, gamma, beta, i, c, hw, true),
                    gamma[ch] * (xv - mean[ch]) * inv_std[ch] + beta[ch]);
    EXPECT_EQ(math::plane_offset(b * c + ch, p, c, hw, true), i);
    EXPECT_EQ(math::plane_of(i, c, hw, true), b * c + ch);
  }
}

}  // namespace
}  // namespace convnet
