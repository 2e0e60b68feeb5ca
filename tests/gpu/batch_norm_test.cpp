// BatchNorm2d on the GPU against the double-precision reference: output,
// running statistics, recompute, input gradient (both GradModes) and scale
// and shift gradients, with and without the fused ReLU, in training and
// inference, through each of its training paths (cuDNN's persistent and
// spatial modes, convnet's own kernels).
#include "layers/batch_norm.h"

#include <cstdlib>

#include "layers/relu.h"
#include "tests/gpu/gpu_test_util.h"

namespace convnet::testing {
namespace {

class GpuBatchNorm : public GpuTest {
 protected:
  void check(bool fuse_relu, Mode mode, GradMode dx_mode, Layout layout = Layout::nchw) {
    const Shape in{4, 16, 7, 5}, c{16};
    BatchNormOptions o;
    o.channels = 16;
    o.fuse_relu = fuse_relu;
    o.layout = layout;
    auto g = BatchNorm2d::create(gpu(), "bn", o, in);
    const Tensor x = random(in, -2.0, 3.0), w = random(c, 0.5, 1.5), b = random(c);
    const Tensor rm = random(c), rv = random(c, 0.5, 2.0);
    Tensor grm = upload(rm), grv = upload(rv), gy = device_zeros(in, layout);
    const Tensor gx = upload(x, layout), gw = upload(w), gb = upload(b);
    g->forward(mode, gx, gw, gb, grm, grv, gy);
    const ref::Array xr = ref_of(x), wr = ref_of(w);
    const ref::BatchNormForward f =
        ref::batch_norm_forward({.channels = 16}, mode, xr, wr, ref_of(b), ref_of(rm), ref_of(rv));
    const ref::Array yr = fuse_relu ? ref::relu_forward(f.y) : f.y;
    EXPECT_TRUE(close(gy, yr)) << "forward";
    EXPECT_TRUE(close(grm, f.running_mean)) << "running mean";
    EXPECT_TRUE(close(grv, f.running_var)) << "running variance";

    Tensor gr = device_zeros(in, layout);
    g->recompute(gx, gw, gb, gr);
    EXPECT_TRUE(close(gr, yr)) << "recompute";

    const Tensor dy = random(in), dx = random(in), dw = random(c), db = random(c);
    const ref::Array dyr = fuse_relu ? ref::relu_backward(yr, ref_of(dy)) : ref_of(dy);
    const ref::BatchNormGrads grads =
        ref::batch_norm_backward({.channels = 16}, mode, xr, wr, dyr, f.mean, f.var);
    Tensor gdx = upload(dx, layout), gdw = upload(dw), gdb = upload(db);
    g->backward(gx, gw, upload(dy, layout), gdx, dx_mode, gdw, gdb);
    const bool accumulate = dx_mode == GradMode::accumulate;
    EXPECT_TRUE(close(gdx, accumulate ? plus(ref_of(dx), grads.dx) : grads.dx)) << "input gradient";
    EXPECT_TRUE(close(gdw, plus(ref_of(dw), grads.dweight))) << "weight gradient";
    EXPECT_TRUE(close(gdb, plus(ref_of(db), grads.dbias))) << "bias gradient";
  }
};

TEST_F(GpuBatchNorm, Training) { check(false, Mode::training, GradMode::overwrite); }
TEST_F(GpuBatchNorm, ReluTrainingAccumulates) { check(true, Mode::training, GradMode::accumulate); }
TEST_F(GpuBatchNorm, Inference) { check(false, Mode::inference, GradMode::overwrite); }
TEST_F(GpuBatchNorm, ReluInference) { check(true, Mode::inference, GradMode::accumulate); }

TEST_F(GpuBatchNorm, ChannelsLast) {
  check(false, Mode::training, GradMode::overwrite, Layout::nhwc);
  check(true, Mode::training, GradMode::accumulate, Layout::nhwc);
  check(true, Mode::inference, GradMode::overwrite, Layout::nhwc);
}

// NHWC in cuDNN's classic spatial mode (the step down from the persistent
// mode, or CONVNET_CUDNN_BN=spatial).
TEST_F(GpuBatchNorm, ChannelsLastSpatialMode) {
  ASSERT_EQ(setenv("CONVNET_CUDNN_BN", "spatial", 1), 0);
  check(true, Mode::training, GradMode::accumulate, Layout::nhwc);
  unsetenv("CONVNET_CUDNN_BN");
}

// convnet's own training batch-norm kernels (CONVNET_CUDNN_BN=off; the
// fallback where cuDNN rejects an activation type), in f32.
TEST_F(GpuBatchNorm, OwnKernels) {
  ASSERT_EQ(setenv("CONVNET_CUDNN_BN", "off", 1), 0);
  check(false, Mode::training, GradMode::overwrite);
  check(true, Mode::training, GradMode::accumulate, Layout::nhwc);
  unsetenv("CONVNET_CUDNN_BN");
}

}  // namespace
}  // namespace convnet::testing
