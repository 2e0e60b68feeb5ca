// PadShortcut (the CIFAR ResNets' option A shortcut) on the GPU against the
// double-precision reference, nchw and nhwc: copies only, so exact.
#include "layers/pad_shortcut.h"

#include "tests/gpu/gpu_test_util.h"

namespace convnet::testing {
namespace {

using GpuPadShortcut = GpuTest;

TEST_F(GpuPadShortcut, ForwardAndBothGradModes) {
  for (Layout layout : {Layout::nchw, Layout::nhwc}) {
    SCOPED_TRACE(to_string(layout));
    const Shape in{2, 16, 7, 7}, out{2, 32, 4, 4};
    auto g = PadShortcut::create(gpu(), "shortcut", in, out, 2, layout);
    const Tensor x = random(in), dy = random(out), dx = random(in);
    Tensor gy = upload(random(out), layout);  // garbage to overwrite
    g->forward(upload(x, layout), gy);
    EXPECT_TRUE(close(gy, ref::pad_shortcut_forward(ref_of(x), out, 2), 0, 0));
    const ref::Array expected = ref::pad_shortcut_backward(ref_of(dy), in, 2);
    Tensor gdx = upload(dx, layout);
    g->backward(upload(dy, layout), gdx, GradMode::overwrite);
    EXPECT_TRUE(close(gdx, expected, 0, 0));
    gdx = upload(dx, layout);
    g->backward(upload(dy, layout), gdx, GradMode::accumulate);
    EXPECT_TRUE(close(gdx, plus(ref_of(dx), expected), 1e-7, 0));
  }
}

}  // namespace
}  // namespace convnet::testing
