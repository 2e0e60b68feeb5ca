// ChannelGate (the SE block's scaling) on the GPU against the
// double-precision reference: output and both gradients, each GradMode, in
// nchw (guarded output) and nhwc.
#include "layers/channel_gate.h"

#include "tests/gpu/gpu_test_util.h"

namespace convnet::testing {
namespace {

using GpuChannelGate = GpuTest;

TEST_F(GpuChannelGate, ForwardAndBothGradients) {
  for (Layout layout : {Layout::nchw, Layout::nhwc}) {
    SCOPED_TRACE(to_string(layout));
    const Shape in{3, 16, 7, 7}, nc{3, 16};
    auto g = ChannelGate::create(gpu(), "gate", in, nc, layout);
    const Tensor x = random(in), s = random(nc, -3.0, 3.0), dy = random(in);
    const Tensor dx = random(in), ds = random(nc);
    const ref::Array xr = ref_of(x), sr = ref_of(s);
    Tensor gy = layout == Layout::nchw ? guarded_zeros(in) : device_zeros(in, layout);
    g->forward(upload(x, layout), upload(s), gy);
    EXPECT_TRUE(close(gy, ref::channel_gate_forward(xr, sr)));
    const ref::ChannelGateGrads grads = ref::channel_gate_backward(xr, sr, ref_of(dy));
    Tensor gdx = upload(dx, layout), gds = upload(ds);
    g->backward(upload(x, layout), upload(s), upload(dy, layout), gdx, GradMode::overwrite, gds,
                GradMode::accumulate);
    EXPECT_TRUE(close(gdx, grads.dx));
    EXPECT_TRUE(close(gds, plus(ref_of(ds), grads.ds)));
  }
  EXPECT_TRUE(guards_intact());
}

}  // namespace
}  // namespace convnet::testing
