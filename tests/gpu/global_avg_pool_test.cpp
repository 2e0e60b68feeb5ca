// GlobalAvgPool on the GPU against the double-precision reference, nchw
// (guarded output) and nhwc.
#include "layers/global_avg_pool.h"

#include "tests/gpu/gpu_test_util.h"

namespace convnet::testing {
namespace {

using GpuGlobalAvgPool = GpuTest;

TEST_F(GpuGlobalAvgPool, ForwardAndAccumulatingBackward) {
  for (Layout layout : {Layout::nchw, Layout::nhwc}) {
    SCOPED_TRACE(to_string(layout));
    const Shape in{3, 16, 7, 7}, nc{3, 16};
    auto g = GlobalAvgPool::create(gpu(), "gap", in, layout);
    const Tensor x = random(in), dy = random(nc), dx = random(in);
    Tensor gy = guarded_zeros(nc);
    g->forward(upload(x, layout), gy);
    EXPECT_TRUE(close(gy, ref::global_avg_pool_forward(ref_of(x))));
    Tensor gdx = upload(dx, layout);
    g->backward(upload(dy), gdx, GradMode::accumulate);
    EXPECT_TRUE(close(gdx, plus(ref_of(dx), ref::global_avg_pool_backward(in, ref_of(dy)))));
  }
  EXPECT_TRUE(guards_intact());
}

}  // namespace
}  // namespace convnet::testing
