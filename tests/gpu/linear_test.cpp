// Linear on the GPU (cuBLAS) against the double-precision reference.
#include "layers/linear.h"

#include "tests/gpu/gpu_test_util.h"

namespace convnet::testing {
namespace {

using GpuLinear = GpuTest;

TEST_F(GpuLinear, WithBiasAccumulating) {
  const Shape in{5, 40};
  LinearOptions o;
  o.in_features = 40;
  o.out_features = 10;
  auto g = Linear::create(gpu(), "fc", o, in);
  const Tensor x = random(in), w = random(g->weight_shape()), b = random(g->bias_shape());
  const ref::Array xr = ref_of(x), wr = ref_of(w), br = ref_of(b);
  Tensor gy = device_zeros(g->output_shape());
  g->forward(upload(x), upload(w), upload(b), gy);
  EXPECT_TRUE(close(gy, ref::linear_forward(xr, wr, &br)));
  const Tensor dy = random(g->output_shape());
  const Tensor dx = random(in), dw = random(g->weight_shape()), db = random(g->bias_shape());
  Tensor gdx = upload(dx), gdw = upload(dw), gdb = upload(db);
  g->backward(upload(x), upload(w), upload(dy), gdx, GradMode::accumulate, gdw, gdb);
  const ref::LinearGrads grads = ref::linear_backward(xr, wr, ref_of(dy));
  EXPECT_TRUE(close(gdx, plus(ref_of(dx), grads.dx)));
  EXPECT_TRUE(close(gdw, plus(ref_of(dw), grads.dweight)));
  EXPECT_TRUE(close(gdb, plus(ref_of(db), grads.dbias)));
}

}  // namespace
}  // namespace convnet::testing
