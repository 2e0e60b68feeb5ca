// Every GPU layer against the CPU backend (oneDNN) on the same inputs:
// outputs, input gradients (in both GradModes) and parameter gradients.
// Gradients that accumulate start from the same non-zero values on both sides,
// so "accumulate" is checked, not only "overwrite".
#include <cstdlib>
#include <limits>

#include "layers/add.h"
#include "layers/avg_pool2d.h"
#include "layers/batch_norm.h"
#include "layers/channel_gate.h"
#include "layers/concat.h"
#include "layers/conv2d.h"
#include "layers/global_avg_pool.h"
#include "layers/linear.h"
#include "layers/max_pool2d.h"
#include "layers/relu.h"
#include "layers/sgd.h"
#include "layers/softmax_cross_entropy.h"
#include "tests/gpu/gpu_test_util.h"

namespace convnet::testing {
namespace {

class GpuLayers : public GpuTest {
 protected:
  // The GPU layer runs in `layout` (activations); the CPU layer in nchw.
  void check_conv(const Conv2dOptions& o, const Shape& in, GradMode dx_mode,
                  Layout layout = Layout::nchw) {
    auto c = Conv2d::create(cpu(), "conv", o, in);
    Conv2dOptions go = o;
    go.input_layout = go.output_layout = layout;
    auto g = Conv2d::create(gpu(), "conv", go, in);
    const Tensor x = random(in), w = random(c->weight_shape());
    const Tensor b = o.bias ? random(c->bias_shape()) : Tensor();
    Tensor y = host_zeros(c->output_shape());
    c->forward(x, w, b, y);
    const Tensor gx = upload(x, layout), gw = upload(w), gb = b.defined() ? upload(b) : Tensor();
    Tensor gy = device_zeros(c->output_shape(), layout);
    g->forward(gx, gw, gb, gy);
    EXPECT_TRUE(close(gy, y)) << "forward";

    const Tensor dy = random(c->output_shape());
    Tensor dx = random(in), dw = random(c->weight_shape());
    Tensor db = o.bias ? random(c->bias_shape()) : Tensor();
    Tensor gdx = upload(dx, layout), gdw = upload(dw), gdb = db.defined() ? upload(db) : Tensor();
    c->backward(x, w, dy, dx, dx_mode, dw, db);
    g->backward(gx, gw, upload(dy, layout), gdx, dx_mode, gdw, gdb);
    EXPECT_TRUE(close(gdx, dx)) << "input gradient";
    EXPECT_TRUE(close(gdw, dw)) << "weight gradient";
    if (o.bias) {
      EXPECT_TRUE(close(gdb, db)) << "bias gradient";
    }
  }

  void check_batch_norm(bool fuse_relu, Mode mode, GradMode dx_mode, Layout layout = Layout::nchw) {
    const Shape in{4, 16, 7, 5};
    BatchNormOptions o;
    o.channels = 16;
    o.fuse_relu = fuse_relu;
    auto c = BatchNorm2d::create(cpu(), "bn", o, in);
    BatchNormOptions go = o;
    go.layout = layout;
    auto g = BatchNorm2d::create(gpu(), "bn", go, in);
    const Tensor x = random(in, -2.0, 3.0), w = random(Shape{16}, 0.5, 1.5);
    const Tensor b = random(Shape{16});
    Tensor rm = random(Shape{16}), rv = random(Shape{16}, 0.5, 2.0);
    Tensor grm = upload(rm), grv = upload(rv);
    Tensor y = host_zeros(in);
    const Tensor gx = upload(x, layout), gw = upload(w), gb = upload(b);
    Tensor gy = device_zeros(in, layout);
    c->forward(mode, x, w, b, rm, rv, y);
    g->forward(mode, gx, gw, gb, grm, grv, gy);
    EXPECT_TRUE(close(gy, y)) << "forward";
    EXPECT_TRUE(close(grm, rm)) << "running mean";
    EXPECT_TRUE(close(grv, rv)) << "running variance";

    Tensor r = host_zeros(in), gr = device_zeros(in, layout);
    c->recompute(x, w, b, r);
    g->recompute(gx, gw, gb, gr);
    EXPECT_TRUE(close(gr, r)) << "recompute";

    const Tensor dy = random(in);
    Tensor dx = random(in), dw = random(Shape{16}), db = random(Shape{16});
    Tensor gdx = upload(dx, layout), gdw = upload(dw), gdb = upload(db);
    c->backward(x, w, dy, dx, dx_mode, dw, db);
    g->backward(gx, gw, upload(dy, layout), gdx, dx_mode, gdw, gdb);
    EXPECT_TRUE(close(gdx, dx)) << "input gradient";
    EXPECT_TRUE(close(gdw, dw)) << "weight gradient";
    EXPECT_TRUE(close(gdb, db)) << "bias gradient";
  }
};

Conv2dOptions conv(int64_t in, int64_t out, int64_t k, int64_t stride, int64_t pad,
                   int64_t groups = 1, bool bias = false) {
  Conv2dOptions o;
  o.in_channels = in;
  o.out_channels = out;
  o.kernel = k;
  o.stride = stride;
  o.padding = pad;
  o.groups = groups;
  o.bias = bias;
  return o;
}

TEST_F(GpuLayers, Conv3x3) {
  check_conv(conv(16, 32, 3, 1, 1), Shape{4, 16, 12, 12}, GradMode::overwrite);
}
TEST_F(GpuLayers, Conv1x1Stride2Accumulates) {
  check_conv(conv(32, 64, 1, 2, 0), Shape{3, 32, 9, 9}, GradMode::accumulate);
}
TEST_F(GpuLayers, ConvStem7x7WithBias) {
  check_conv(conv(3, 16, 7, 2, 3, 1, true), Shape{2, 3, 33, 31}, GradMode::overwrite);
}
TEST_F(GpuLayers, ConvGrouped) {
  check_conv(conv(16, 16, 3, 2, 1, 4), Shape{2, 16, 10, 10}, GradMode::accumulate);
}

// TF32 products keep 10 mantissa bits (relative error 2^-11 ~ 5e-4 each);
// over a reduction of K = 144 terms of mixed sign the error stays within a
// few 1e-3 of the largest output, so 1e-2 relative is the bound here.
TEST_F(GpuLayers, ConvWithTf32TensorCores) {
  ContextOptions options;
  options.backend = Backend::cuda;
  options.allow_tf32 = true;
  Context tf32(options);
  const Conv2dOptions o = conv(16, 32, 3, 1, 1);
  const Shape in{8, 16, 14, 14};
  auto c = Conv2d::create(cpu(), "conv", o, in);
  auto g = Conv2d::create(tf32, "conv", o, in);
  const Tensor x = random(in), w = random(c->weight_shape()), dy = random(c->output_shape());
  Tensor y = host_zeros(c->output_shape());
  c->forward(x, w, Tensor(), y);
  Tensor gy = Tensor::empty(c->output_shape(), tf32.allocator());
  const Tensor gx = upload(x), gw = upload(w);
  g->forward(gx, gw, Tensor(), gy);
  EXPECT_TRUE(close(gy, y, 1e-2));
  Tensor dx = host_zeros(in), dw = host_zeros(c->weight_shape());
  Tensor gdx = Tensor::empty(in, tf32.allocator()),
         gdw = Tensor::zeros(c->weight_shape(), tf32.allocator());
  c->backward(x, w, dy, dx, GradMode::overwrite, dw, Tensor());
  g->backward(gx, gw, upload(dy), gdx, GradMode::overwrite, gdw, Tensor());
  EXPECT_TRUE(close(gdx, dx, 1e-2));
  EXPECT_TRUE(close(gdw, dw, 1e-2));
}

TEST_F(GpuLayers, ConvChannelsLast) {
  check_conv(conv(16, 32, 3, 2, 1), Shape{4, 16, 12, 12}, GradMode::accumulate, Layout::nhwc);
  check_conv(conv(3, 16, 7, 2, 3), Shape{2, 3, 33, 31}, GradMode::overwrite, Layout::nhwc);
}

TEST_F(GpuLayers, BatchNormChannelsLast) {
  check_batch_norm(false, Mode::training, GradMode::overwrite, Layout::nhwc);
  check_batch_norm(true, Mode::training, GradMode::accumulate, Layout::nhwc);
  check_batch_norm(true, Mode::inference, GradMode::overwrite, Layout::nhwc);
}

// NHWC in cuDNN's classic spatial mode (the step down from the persistent
// mode, or CONVNET_CUDNN_BN=spatial).
TEST_F(GpuLayers, BatchNormChannelsLastSpatialMode) {
  ASSERT_EQ(setenv("CONVNET_CUDNN_BN", "spatial", 1), 0);
  check_batch_norm(true, Mode::training, GradMode::accumulate, Layout::nhwc);
  unsetenv("CONVNET_CUDNN_BN");
}

// convnet's own training batch-norm kernels (CONVNET_CUDNN_BN=off; the
// fallback where cuDNN rejects an activation type) against the CPU in f32.
TEST_F(GpuLayers, BatchNormOwnKernels) {
  ASSERT_EQ(setenv("CONVNET_CUDNN_BN", "off", 1), 0);
  check_batch_norm(false, Mode::training, GradMode::overwrite);
  check_batch_norm(true, Mode::training, GradMode::accumulate, Layout::nhwc);
  unsetenv("CONVNET_CUDNN_BN");
}

TEST_F(GpuLayers, PoolingAndSeGateChannelsLast) {
  const Shape in{2, 8, 11, 10}, nc{2, 8};
  MaxPool2dOptions o;
  o.kernel = 3;
  o.stride = 2;
  o.padding = 1;
  auto c = MaxPool2d::create(cpu(), "pool", o, in);
  o.layout = Layout::nhwc;
  auto g = MaxPool2d::create(gpu(), "pool", o, in);
  const Tensor x = random(in), dy = random(c->output_shape());
  Tensor y = host_zeros(c->output_shape()), gy = device_zeros(c->output_shape(), Layout::nhwc);
  c->forward(Mode::training, x, y);
  g->forward(Mode::training, upload(x, Layout::nhwc), gy);
  EXPECT_TRUE(close(gy, y));
  Tensor dx = random(in), gdx = upload(dx, Layout::nhwc);
  c->backward(dy, dx, GradMode::accumulate);
  g->backward(upload(dy, Layout::nhwc), gdx, GradMode::accumulate);
  EXPECT_TRUE(close(gdx, dx));

  auto cp = GlobalAvgPool::create(cpu(), "gap", in);
  auto gp = GlobalAvgPool::create(gpu(), "gap", in, Layout::nhwc);
  Tensor s = host_zeros(nc), gs = device_zeros(nc);
  cp->forward(x, s);
  gp->forward(upload(x, Layout::nhwc), gs);
  EXPECT_TRUE(close(gs, s));

  auto cg = ChannelGate::create(cpu(), "gate", in, nc);
  auto gg = ChannelGate::create(gpu(), "gate", in, nc, Layout::nhwc);
  const Tensor logits = random(nc, -3.0, 3.0), dz = random(in);
  Tensor z = host_zeros(in), gz = device_zeros(in, Layout::nhwc);
  cg->forward(x, logits, z);
  gg->forward(upload(x, Layout::nhwc), upload(logits), gz);
  EXPECT_TRUE(close(gz, z));
  Tensor dxg = random(in), ds = random(nc), gdxg = upload(dxg, Layout::nhwc), gds = upload(ds);
  cg->backward(x, logits, dz, dxg, GradMode::overwrite, ds, GradMode::accumulate);
  gg->backward(upload(x, Layout::nhwc), upload(logits), upload(dz, Layout::nhwc), gdxg,
               GradMode::overwrite, gds, GradMode::accumulate);
  EXPECT_TRUE(close(gdxg, dxg));
  EXPECT_TRUE(close(gds, ds));
}

TEST_F(GpuLayers, BatchNormTraining) {
  check_batch_norm(false, Mode::training, GradMode::overwrite);
}
TEST_F(GpuLayers, BatchNormReluTrainingAccumulates) {
  check_batch_norm(true, Mode::training, GradMode::accumulate);
}
TEST_F(GpuLayers, BatchNormInference) {
  check_batch_norm(false, Mode::inference, GradMode::overwrite);
}
TEST_F(GpuLayers, BatchNormReluInference) {
  check_batch_norm(true, Mode::inference, GradMode::accumulate);
}

TEST_F(GpuLayers, ReluAndAdd) {
  const Shape s{3, 8, 5, 5};
  auto cr = Relu::create(cpu(), "relu", s), gr = Relu::create(gpu(), "relu", s);
  const Tensor x = random(s), dy = random(s);
  Tensor y = host_zeros(s), gy = device_zeros(s);
  cr->forward(x, y);
  gr->forward(upload(x), gy);
  EXPECT_TRUE(close(gy, y));
  Tensor dx = random(s), gdx = upload(dx);
  cr->backward(y, dy, dx, GradMode::accumulate);
  gr->backward(gy, upload(dy), gdx, GradMode::accumulate);
  EXPECT_TRUE(close(gdx, dx));

  auto ca = Add::create(cpu(), "add", s, s), ga = Add::create(gpu(), "add", s, s);
  const Tensor b = random(s);
  Tensor sum = host_zeros(s), gsum = device_zeros(s);
  ca->forward(x, b, sum);
  ga->forward(upload(x), upload(b), gsum);
  EXPECT_TRUE(close(gsum, sum));
  Tensor da = random(s), db = random(s), gda = upload(da), gdb = upload(db);
  ca->backward(dy, da, GradMode::overwrite, db, GradMode::accumulate);
  ga->backward(upload(dy), gda, GradMode::overwrite, gdb, GradMode::accumulate);
  EXPECT_TRUE(close(gda, da));
  EXPECT_TRUE(close(gdb, db));
}

TEST_F(GpuLayers, MaxPool3x3Stride2) {
  const Shape in{2, 8, 11, 10};
  MaxPool2dOptions o;
  o.kernel = 3;
  o.stride = 2;
  o.padding = 1;
  auto c = MaxPool2d::create(cpu(), "pool", o, in), g = MaxPool2d::create(gpu(), "pool", o, in);
  const Tensor x = random(in);
  Tensor y = host_zeros(c->output_shape()), gy = guarded_zeros(c->output_shape());
  c->forward(Mode::training, x, y);
  g->forward(Mode::training, upload(x), gy);
  EXPECT_TRUE(close(gy, y));
  const Tensor dy = random(c->output_shape());
  Tensor dx = random(in), gdx = upload(dx);
  c->backward(dy, dx, GradMode::accumulate);
  g->backward(upload(dy), gdx, GradMode::accumulate);
  EXPECT_TRUE(close(gdx, dx));
  EXPECT_TRUE(guards_intact());
}

TEST_F(GpuLayers, AvgPool) {
  for (bool include_pad : {true, false}) {
    const Shape in{2, 8, 9, 9};
    AvgPool2dOptions o;
    o.kernel = 3;
    o.stride = 2;
    o.padding = 1;
    o.count_include_pad = include_pad;
    auto c = AvgPool2d::create(cpu(), "pool", o, in), g = AvgPool2d::create(gpu(), "pool", o, in);
    const Tensor x = random(in);
    Tensor y = host_zeros(c->output_shape()), gy = guarded_zeros(c->output_shape());
    c->forward(x, y);
    g->forward(upload(x), gy);
    EXPECT_TRUE(close(gy, y)) << "count_include_pad " << include_pad;
    const Tensor dy = random(c->output_shape());
    Tensor dx = host_zeros(in), gdx = guarded_zeros(in);
    c->backward(dy, dx, GradMode::overwrite);
    g->backward(upload(dy), gdx, GradMode::overwrite);
    EXPECT_TRUE(close(gdx, dx)) << "count_include_pad " << include_pad;
  }
  EXPECT_TRUE(guards_intact());
}

TEST_F(GpuLayers, GlobalAvgPoolAndChannelGate) {
  const Shape in{3, 16, 7, 7}, nc{3, 16};
  auto c = GlobalAvgPool::create(cpu(), "gap", in), g = GlobalAvgPool::create(gpu(), "gap", in);
  const Tensor x = random(in);
  Tensor y = host_zeros(nc), gy = guarded_zeros(nc);
  c->forward(x, y);
  g->forward(upload(x), gy);
  EXPECT_TRUE(close(gy, y));
  const Tensor dy = random(nc);
  Tensor dx = random(in), gdx = upload(dx);
  c->backward(dy, dx, GradMode::accumulate);
  g->backward(upload(dy), gdx, GradMode::accumulate);
  EXPECT_TRUE(close(gdx, dx));

  auto cg = ChannelGate::create(cpu(), "gate", in, nc);
  auto gg = ChannelGate::create(gpu(), "gate", in, nc);
  const Tensor s = random(nc, -3.0, 3.0), dz = random(in);
  Tensor z = host_zeros(in), gz = guarded_zeros(in);
  cg->forward(x, s, z);
  gg->forward(upload(x), upload(s), gz);
  EXPECT_TRUE(close(gz, z));
  Tensor dxg = random(in), ds = random(nc), gdxg = upload(dxg), gds = upload(ds);
  cg->backward(x, s, dz, dxg, GradMode::overwrite, ds, GradMode::accumulate);
  gg->backward(upload(x), upload(s), upload(dz), gdxg, GradMode::overwrite, gds,
               GradMode::accumulate);
  EXPECT_TRUE(close(gdxg, dxg));
  EXPECT_TRUE(close(gds, ds));
  EXPECT_TRUE(guards_intact());
}

TEST_F(GpuLayers, ConcatIntoChannelSliceOfLargerBuffer) {
  const std::vector<Shape> ins{{2, 3, 4, 5}, {2, 5, 4, 5}};
  const Shape big{2, 12, 4, 5};  // y is channels [0, 8) of a 12-channel buffer
  ConcatOptions o;
  o.output_strides = {12 * 20, 20, 5, 1};
  auto c = Concat::create(cpu(), "cat", o, ins), g = Concat::create(gpu(), "cat", o, ins);
  const Tensor a = random(ins[0]), b = random(ins[1]);
  Tensor y = random(big), gy = upload(y);
  c->forward({a, b}, y.slice(1, 0, 8));
  g->forward({upload(a), upload(b)}, gy.slice(1, 0, 8));
  EXPECT_TRUE(close(gy, y));  // channels [8, 12) untouched on both
  Tensor da = random(ins[0]), db = random(ins[1]), gda = upload(da), gdb = upload(db);
  c->backward(y.slice(1, 0, 8), {da, db}, {GradMode::accumulate, GradMode::overwrite});
  g->backward(gy.slice(1, 0, 8), {gda, gdb}, {GradMode::accumulate, GradMode::overwrite});
  EXPECT_TRUE(close(gda, da));
  EXPECT_TRUE(close(gdb, db));
}

TEST_F(GpuLayers, LinearWithBias) {
  const Shape in{5, 40};
  LinearOptions o;
  o.in_features = 40;
  o.out_features = 10;
  auto c = Linear::create(cpu(), "fc", o, in), g = Linear::create(gpu(), "fc", o, in);
  const Tensor x = random(in), w = random(c->weight_shape()), b = random(c->bias_shape());
  Tensor y = host_zeros(c->output_shape()), gy = device_zeros(c->output_shape());
  c->forward(x, w, b, y);
  g->forward(upload(x), upload(w), upload(b), gy);
  EXPECT_TRUE(close(gy, y));
  const Tensor dy = random(c->output_shape());
  Tensor dx = random(in), dw = random(c->weight_shape()), db = random(c->bias_shape());
  Tensor gdx = upload(dx), gdw = upload(dw), gdb = upload(db);
  c->backward(x, w, dy, dx, GradMode::accumulate, dw, db);
  g->backward(upload(x), upload(w), upload(dy), gdx, GradMode::accumulate, gdw, gdb);
  EXPECT_TRUE(close(gdx, dx));
  EXPECT_TRUE(close(gdw, dw));
  EXPECT_TRUE(close(gdb, db));
}

TEST_F(GpuLayers, SoftmaxCrossEntropyWithLabelSmoothing) {
  const Shape in{6, 10};
  SoftmaxCrossEntropyOptions o;
  o.label_smoothing = 0.1;
  auto c = SoftmaxCrossEntropy::create(cpu(), "loss", o, in);
  auto g = SoftmaxCrossEntropy::create(gpu(), "loss", o, in);
  const Tensor z = random(in, -4.0, 4.0);
  const std::vector<int64_t> labels{0, 9, 3, 3, 7, 1};
  const double loss = c->forward(z, labels);
  EXPECT_NEAR(g->forward(upload(z), labels), loss, 1e-5 * std::max(1.0, loss));
  Tensor dz = random(in), gdz = upload(dz);
  c->backward(dz, GradMode::accumulate);
  g->backward(gdz, GradMode::accumulate);
  EXPECT_TRUE(close(gdz, dz));
}

// forward_accumulate keeps the training metrics on the device; they equal
// the CPU's (a non-finite forward counted, not summed).
TEST_F(GpuLayers, SoftmaxCrossEntropyTrainingMetricsMatchCpu) {
  const Shape in{300, 10};  // more rows than the metrics kernel's block
  auto c = SoftmaxCrossEntropy::create(cpu(), "loss", {}, in);
  auto g = SoftmaxCrossEntropy::create(gpu(), "loss", {}, in);
  Tensor z = random(in, -4.0, 4.0);
  std::vector<int64_t> labels(300);
  for (int i = 0; i < 300; ++i) labels[i] = (i * 7) % 10;
  for (int k = 0; k < 2; ++k) {
    c->forward_accumulate(z, labels);
    g->forward_accumulate(upload(z), labels);
  }
  z.data<float>()[42] = std::numeric_limits<float>::infinity();
  c->forward_accumulate(z, labels);
  g->forward_accumulate(upload(z), labels);
  const SoftmaxCrossEntropy::Metrics mc = c->take_metrics(), mg = g->take_metrics();
  EXPECT_NEAR(mg.loss_sum, mc.loss_sum, 1e-5 * mc.loss_sum);
  EXPECT_EQ(mg.top1, mc.top1);
  EXPECT_EQ(mg.top5, mc.top5);
  EXPECT_EQ(mg.nonfinite, 1);
  EXPECT_EQ(mc.nonfinite, 1);
  EXPECT_EQ(g->take_metrics().top1, 0);  // reset
}

// fp16 loss scaling's overflow test over f32 gradients.
TEST_F(GpuLayers, AllFiniteFindsAnOverflow) {
  std::vector<float> v(100000, 1.0f);
  const Tensor ok = upload(Tensor::wrap(v.data(), Shape{100000}));
  EXPECT_TRUE(all_finite(gpu(), ok));
  v[77777] = std::numeric_limits<float>::infinity();
  EXPECT_FALSE(all_finite(gpu(), upload(Tensor::wrap(v.data(), Shape{100000}))));
  v[77777] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_FALSE(all_finite(gpu(), upload(Tensor::wrap(v.data(), Shape{100000}))));
}

TEST_F(GpuLayers, SgdNesterovWithWeightDecaySegments) {
  SgdOptions o;
  o.momentum = 0.9;
  o.nesterov = true;
  o.weight_decay = 1e-2;
  const std::vector<ParamSegment> segments{{0, 700, true}, {700, 300, false}};
  Sgd c(cpu(), o, segments, 1000), g(gpu(), o, segments, 1000);
  Tensor w = random(Shape{1000}), gw = upload(w);
  for (int step = 0; step < 3; ++step) {
    const Tensor grad = random(Shape{1000});
    c.step(w, grad, 0.1);
    g.step(gw, upload(grad), 0.1);
  }
  EXPECT_TRUE(close(gw, w, 1e-6));
  EXPECT_TRUE(close(g.momentum_buffer(), c.momentum_buffer(), 1e-6));
}

}  // namespace
}  // namespace convnet::testing
