// ReLU on the GPU against the double-precision reference (exact: it only
// selects values; accumulate adds once).
#include "layers/relu.h"

#include "tests/gpu/gpu_test_util.h"

namespace convnet::testing {
namespace {

using GpuRelu = GpuTest;

TEST_F(GpuRelu, ForwardAndAccumulatingBackward) {
  const Shape s{3, 8, 5, 5};
  auto g = Relu::create(gpu(), "relu", s);
  const Tensor x = random(s), dy = random(s), dx = random(s);
  Tensor gy = device_zeros(s);
  g->forward(upload(x), gy);
  const ref::Array yr = ref::relu_forward(ref_of(x));
  EXPECT_TRUE(close(gy, yr, 0, 0));
  Tensor gdx = upload(dx);
  g->backward(gy, upload(dy), gdx, GradMode::accumulate);
  EXPECT_TRUE(close(gdx, plus(ref_of(dx), ref::relu_backward(yr, ref_of(dy))), 1e-7, 0));
}

}  // namespace
}  // namespace convnet::testing
