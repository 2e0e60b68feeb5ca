// Concat on the GPU against the double-precision reference, writing into a
// channel slice of a larger buffer (the memory-efficient DenseNet's use):
// the other channels stay untouched; gradients in both GradModes. Copies
// only, so exact.
#include "layers/concat.h"

#include "tests/gpu/gpu_test_util.h"

namespace convnet::testing {
namespace {

using GpuConcat = GpuTest;

TEST_F(GpuConcat, IntoAChannelSliceOfALargerBuffer) {
  const std::vector<Shape> ins{{2, 3, 4, 5}, {2, 5, 4, 5}};
  const Shape big{2, 12, 4, 5};  // y is channels [0, 8) of a 12-channel buffer
  ConcatOptions o;
  o.output_strides = {12 * 20, 20, 5, 1};
  auto g = Concat::create(gpu(), "cat", o, ins);
  const Tensor a = random(ins[0]), b = random(ins[1]), before = random(big);
  Tensor gy = upload(before);
  g->forward({upload(a), upload(b)}, gy.slice(1, 0, 8));
  ref::Array expected = ref_of(before);
  const ref::Array joined = ref::concat_forward({ref_of(a), ref_of(b)});
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t c = 0; c < 8; ++c)
      for (int64_t h = 0; h < 4; ++h)
        for (int64_t w = 0; w < 5; ++w) expected.at(n, c, h, w) = joined.at(n, c, h, w);
  EXPECT_TRUE(close(gy, expected, 0, 0)) << "channels [8, 12) untouched";

  const Tensor da = random(ins[0]), db = random(ins[1]);
  Tensor gda = upload(da), gdb = upload(db);
  g->backward(gy.slice(1, 0, 8), {gda, gdb}, {GradMode::accumulate, GradMode::overwrite});
  const std::vector<ref::Array> grads = ref::concat_backward(ins, joined);
  EXPECT_TRUE(close(gda, plus(ref_of(da), grads[0]), 1e-7, 0));
  EXPECT_TRUE(close(gdb, grads[1], 0, 0));
}

}  // namespace
}  // namespace convnet::testing
