// The SGD step on the GPU against a double-precision loop of
// torch.optim.SGD's rule (layers/sgd.h), and fp16 loss scaling's overflow
// test.
#include "layers/sgd.h"

#include <limits>

#include "layers/layer.h"
#include "tests/gpu/gpu_test_util.h"

namespace convnet::testing {
namespace {

using GpuSgd = GpuTest;

// Nesterov momentum 0.9, weight decay 1e-2 on the first segment only, three
// steps. f32 against double over three steps of a few operations each: 1e-6.
TEST_F(GpuSgd, NesterovWithWeightDecaySegments) {
  const double lr = 0.1, momentum = 0.9, decay = 1e-2;
  SgdOptions o;
  o.momentum = momentum;
  o.nesterov = true;
  o.weight_decay = decay;
  const std::vector<ParamSegment> segments{{0, 700, true}, {700, 300, false}};
  Sgd g(gpu(), o, segments, 1000);
  const Tensor w0 = random(Shape{1000});
  Tensor gw = upload(w0);
  ref::Array w = ref_of(w0), v(Shape{1000});
  for (int step = 0; step < 3; ++step) {
    const Tensor grad = random(Shape{1000});
    g.step(gw, upload(grad), lr);
    for (int64_t i = 0; i < 1000; ++i) {
      const double d = grad.data<float>()[i] + (i < 700 ? decay : 0.0) * w[i];
      v[i] = step == 0 ? d : momentum * v[i] + d;
      w[i] -= lr * (d + momentum * v[i]);
    }
  }
  EXPECT_TRUE(close(gw, w, 1e-6));
  EXPECT_TRUE(close(g.momentum_buffer(), v, 1e-6));
}

TEST_F(GpuSgd, AllFiniteFindsAnOverflow) {
  std::vector<float> v(100000, 1.0f);
  const Tensor ok = upload(Tensor::wrap(v.data(), Shape{100000}));
  EXPECT_TRUE(all_finite(gpu(), ok));
  v[77777] = std::numeric_limits<float>::infinity();
  EXPECT_FALSE(all_finite(gpu(), upload(Tensor::wrap(v.data(), Shape{100000}))));
  v[77777] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_FALSE(all_finite(gpu(), upload(Tensor::wrap(v.data(), Shape{100000}))));
}

}  // namespace
}  // namespace convnet::testing
