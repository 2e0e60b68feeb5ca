// Add on the GPU against the double-precision reference: one f32 addition
// per element (one rounding), gradients copied (overwrite) or added.
#include "layers/add.h"

#include "tests/gpu/gpu_test_util.h"

namespace convnet::testing {
namespace {

using GpuAdd = GpuTest;

TEST_F(GpuAdd, ForwardAndGradientsInBothModes) {
  const Shape s{3, 8, 5, 5};
  auto g = Add::create(gpu(), "add", s, s);
  const Tensor a = random(s), b = random(s), dy = random(s), da = random(s), db = random(s);
  Tensor gy = device_zeros(s);
  g->forward(upload(a), upload(b), gy);
  EXPECT_TRUE(close(gy, ref::add_forward(ref_of(a), ref_of(b)), 1e-7, 0));
  const ref::AddGrads grads = ref::add_backward(ref_of(dy));
  Tensor gda = upload(da), gdb = upload(db);
  g->backward(upload(dy), gda, GradMode::overwrite, gdb, GradMode::accumulate);
  EXPECT_TRUE(close(gda, grads.da, 0, 0));
  EXPECT_TRUE(close(gdb, plus(ref_of(db), grads.db), 1e-7, 0));
}

}  // namespace
}  // namespace convnet::testing
