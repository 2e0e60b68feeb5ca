// Conv2d on the GPU (cuDNN) against the double-precision reference: output,
// input gradient (both GradModes) and weight and bias gradients (which
// accumulate), in nchw and nhwc, grouped, with TF32.
#include "layers/conv2d.h"

#include "tests/gpu/gpu_test_util.h"

namespace convnet::testing {
namespace {

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

class GpuConv2d : public GpuTest {
 protected:
  // The GPU layer runs in `layout` (activations) on `context` (gpu() unless
  // given); rtol as gpu_test_util.h argues unless given.
  void check(const Conv2dOptions& o, const Shape& in, GradMode dx_mode,
             Layout layout = Layout::nchw, Context* context = nullptr, double rtol = 1e-4) {
    Conv2dOptions go = o;
    go.input_layout = go.output_layout = layout;
    auto g = Conv2d::create(context ? *context : gpu(), "conv", go, in);
    const Tensor x = random(in), w = random(g->weight_shape());
    const Tensor b = o.bias ? random(g->bias_shape()) : Tensor();
    const ref::Array xr = ref_of(x), wr = ref_of(w), br = o.bias ? ref_of(b) : ref::Array();
    const Tensor gx = upload(x, layout), gw = upload(w), gb = b.defined() ? upload(b) : Tensor();
    Tensor gy = device_zeros(g->output_shape(), layout);
    g->forward(gx, gw, gb, gy);
    EXPECT_TRUE(close(gy, ref::conv2d_forward(o, xr, wr, o.bias ? &br : nullptr), rtol))
        << "forward";

    const Tensor dy = random(g->output_shape());
    const ref::Conv2dGrads grads = ref::conv2d_backward(o, xr, wr, ref_of(dy));
    const Tensor dx = random(in), dw = random(g->weight_shape());
    const Tensor db = o.bias ? random(g->bias_shape()) : Tensor();
    Tensor gdx = upload(dx, layout), gdw = upload(dw), gdb = db.defined() ? upload(db) : Tensor();
    g->backward(gx, gw, upload(dy, layout), gdx, dx_mode, gdw, gdb);
    const bool accumulate = dx_mode == GradMode::accumulate;
    EXPECT_TRUE(close(gdx, accumulate ? plus(ref_of(dx), grads.dx) : grads.dx, rtol))
        << "input gradient";
    EXPECT_TRUE(close(gdw, plus(ref_of(dw), grads.dweight), rtol)) << "weight gradient";
    if (o.bias) {
      EXPECT_TRUE(close(gdb, plus(ref_of(db), grads.dbias), rtol)) << "bias gradient";
    }
  }
};

TEST_F(GpuConv2d, Conv3x3) {
  check(conv(16, 32, 3, 1, 1), Shape{4, 16, 12, 12}, GradMode::overwrite);
}
TEST_F(GpuConv2d, Conv1x1Stride2Accumulates) {
  check(conv(32, 64, 1, 2, 0), Shape{3, 32, 9, 9}, GradMode::accumulate);
}
TEST_F(GpuConv2d, ConvStem7x7WithBias) {
  check(conv(3, 16, 7, 2, 3, 1, true), Shape{2, 3, 33, 31}, GradMode::overwrite);
}
TEST_F(GpuConv2d, ConvGrouped) {
  check(conv(16, 16, 3, 2, 1, 4), Shape{2, 16, 10, 10}, GradMode::accumulate);
}
TEST_F(GpuConv2d, ConvChannelsLast) {
  check(conv(16, 32, 3, 2, 1), Shape{4, 16, 12, 12}, GradMode::accumulate, Layout::nhwc);
  check(conv(3, 16, 7, 2, 3), Shape{2, 3, 33, 31}, GradMode::overwrite, Layout::nhwc);
}

// TF32 products keep 10 mantissa bits (relative error 2^-11 ~ 5e-4 each);
// over a reduction of K = 144 terms of mixed sign the error stays within a
// few 1e-3 of the largest output, so 1e-2 relative is the bound here.
TEST_F(GpuConv2d, ConvWithTf32TensorCores) {
  ContextOptions options;
  options.backend = Backend::cuda;
  options.allow_tf32 = true;
  Context tf32(options);
  check(conv(16, 32, 3, 1, 1), Shape{8, 16, 14, 14}, GradMode::overwrite, Layout::nchw, &tf32,
        1e-2);
}

}  // namespace
}  // namespace convnet::testing
