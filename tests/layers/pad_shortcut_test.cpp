// PadShortcut (layers/pad_shortcut.h) on the CPU in every layout it runs,
// against the double-precision reference. It only moves values (a copy or
// a zero), so forward and the overwriting backward are exact; accumulate
// adds two f32 values (one rounding: rtol 1e-7, as the ReLU test argues).
#include "layers/pad_shortcut.h"

#include <gtest/gtest.h>

#include "tests/testing/test_util.h"

namespace convnet {
namespace {

using testing::all_close;
using testing::random_array;

struct Case {
  const char* label;
  Shape input;
  int64_t out_channels, stride;
  Layout layout;
};

// CIFAR ResNet stage transitions (16 -> 32 channels, stride 2: pad 8, half a
// block in nchw16c), odd sizes, channels that are no multiple of a block,
// stride 1.
const Case kCases[] = {
    {"nchw_16_to_32", {2, 16, 8, 8}, 32, 2, Layout::nchw},
    {"nchw8c_16_to_32", {2, 16, 8, 8}, 32, 2, Layout::nchw8c},
    {"nchw16c_16_to_32", {2, 16, 8, 8}, 32, 2, Layout::nchw16c},
    {"nchw16c_odd", {1, 5, 7, 5}, 9, 2, Layout::nchw16c},
    {"nchw8c_odd_stride3", {3, 3, 7, 8}, 13, 3, Layout::nchw8c},
    {"nchw_stride1", {2, 4, 3, 3}, 8, 1, Layout::nchw},
    {"nhwc_16_to_32", {2, 16, 8, 8}, 32, 2, Layout::nhwc},
    {"nhwc_odd_stride3", {3, 3, 7, 8}, 13, 3, Layout::nhwc},
};

void PrintTo(const Case& c, std::ostream* out) { *out << c.label; }

Shape output_shape(const Case& c) {
  return {c.input[0], c.out_channels, (c.input[2] - 1) / c.stride + 1,
          (c.input[3] - 1) / c.stride + 1};
}

class PadShortcutTest : public ::testing::TestWithParam<Case> {
 protected:
  Context context_;
  std::mt19937 rng_{7};
};

TEST_P(PadShortcutTest, MatchesReference) {
  const Case& c = GetParam();
  const Shape out = output_shape(c);
  auto pad = PadShortcut::create(context_, c.label, c.input, out, c.stride, c.layout);
  const Tensor x = testing::to_tensor(context_, random_array(c.input, rng_), c.layout);
  const Tensor y = testing::to_tensor(context_, random_array(out, rng_), c.layout);  // garbage
  pad->forward(x, y);
  EXPECT_TRUE(all_close(y, ref::pad_shortcut_forward(ref::from_tensor(x), out, c.stride), 0, 0));

  const Tensor dy = testing::to_tensor(context_, random_array(out, rng_), c.layout);
  const ref::Array expected = ref::pad_shortcut_backward(ref::from_tensor(dy), c.input, c.stride);
  const Tensor dx = testing::to_tensor(context_, random_array(c.input, rng_), c.layout);
  pad->backward(dy, dx, GradMode::overwrite);
  EXPECT_TRUE(all_close(dx, expected, 0, 0));

  const ref::Array before = random_array(c.input, rng_);
  const Tensor dx2 = testing::to_tensor(context_, before, c.layout);
  pad->backward(dy, dx2, GradMode::accumulate);
  ref::Array sum = ref::from_tensor(testing::to_tensor(context_, before));
  for (int64_t i = 0; i < sum.numel(); ++i) sum[i] += expected[i];
  EXPECT_TRUE(all_close(dx2, sum, 1e-7, 0));
}

INSTANTIATE_TEST_SUITE_P(Shapes, PadShortcutTest, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return std::string(info.param.label); });

// The reference's backward is forward's adjoint: <pad(x), r> = <x, pad^T(r)>.
TEST(PadShortcutReference, BackwardIsTheAdjointOfForward) {
  std::mt19937 rng(3);
  const Shape in{2, 3, 5, 5}, out{2, 7, 3, 3};
  const ref::Array x = random_array(in, rng), r = random_array(out, rng);
  EXPECT_NEAR(testing::dot(ref::pad_shortcut_forward(x, out, 2), r),
              testing::dot(x, ref::pad_shortcut_backward(r, in, 2)), 1e-12);
}

TEST(PadShortcutBadInput, RejectsShapesThatAreNotASubsampledPadding) {
  Context context;
  EXPECT_TRUE(testing::throws_error_with(
      [&] {
        PadShortcut::create(context, "layer2.0.shortcut", {2, 16, 8, 8}, {2, 31, 4, 4}, 2,
                            Layout::nchw);
      },
      "layer layer2.0.shortcut: output (2, 31, 4, 4) is not input (2, 16, 8, 8) subsampled by 2"));
  EXPECT_TRUE(testing::throws_error_with(
      [&] {
        PadShortcut::create(context, "s", {2, 16, 8, 8}, {2, 32, 8, 8}, 2, Layout::nchw);
      },
      "subsampled by 2"));
  auto channels_last =
      PadShortcut::create(context, "s", {2, 16, 8, 8}, {2, 32, 4, 4}, 2, Layout::nhwc);
  EXPECT_TRUE(testing::throws_error_with(
      [&] {
        channels_last->forward(testing::zeros(context, {2, 16, 8, 8}),
                               testing::zeros(context, {2, 32, 4, 4}, Layout::nhwc));
      },
      "has layout nchw, expected nhwc"));
  auto pad = PadShortcut::create(context, "s", {2, 16, 8, 8}, {2, 32, 4, 4}, 2, Layout::nchw);
  const Tensor wrong = testing::zeros(context, {2, 16, 4, 4});
  EXPECT_THROW(pad->forward(wrong, testing::zeros(context, {2, 32, 4, 4})), Error);
}

}  // namespace
}  // namespace convnet
