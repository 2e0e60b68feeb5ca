#include "layers/max_pool2d.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "tests/testing/test_util.h"

namespace convnet {
namespace {

using testing::all_close;
using testing::dot;
using testing::gradient_matches;
using testing::random_array;

struct Case {
  const char* label;
  Shape input;  // (N, C, H, W)
  MaxPool2dOptions options;
};

// Batch 1, odd spatial sizes, stride 2, padding, channels not a multiple of 8,
// overlapping and non-overlapping windows, a window covering the whole input.
const Case kCases[] = {
    {"k3_s2_p1", {2, 3, 7, 7}, {.kernel = 3, .stride = 2, .padding = 1}},
    {"batch1_odd_k3_s1_p1", {1, 5, 9, 7}, {.kernel = 3, .stride = 1, .padding = 1}},
    {"k2_s2_odd_drops_edge", {3, 6, 5, 7}, {.kernel = 2, .stride = 2}},
    {"k3_s3_p1_c10", {2, 10, 8, 8}, {.kernel = 3, .stride = 3, .padding = 1}},
    {"k5_s2_p2", {2, 3, 6, 9}, {.kernel = 5, .stride = 2, .padding = 2}},
    {"kernel_covers_input", {1, 9, 4, 4}, {.kernel = 4, .stride = 1}},
    // Ceil mode (Caffe's pooling): a last window overhanging the input on the
    // right and bottom; with padding 1, a last window that would start past
    // the input and its left padding is dropped (5 -> 3, not 4).
    {"ceil_k3_s2", {2, 3, 8, 10}, {.kernel = 3, .stride = 2, .ceil_mode = true}},
    {"ceil_k2_s2_p1_drops_window",
     {1, 3, 5, 5},
     {.kernel = 2, .stride = 2, .padding = 1, .ceil_mode = true}},
    {"ceil_k3_s2_p1_c16",
     {2, 16, 9, 6},
     {.kernel = 3, .stride = 2, .padding = 1, .ceil_mode = true}},
};

void PrintTo(const Case& c, std::ostream* out) { *out << c.label; }

// Distinct values spread evenly over [-1, 1) in random order, so that no
// window has a tie. The spacing 2 / numel (>= 2e-3 here) is far above both the
// finite-difference step 2 * 1e-5 (a step never changes a window's argmax) and
// the f32 rounding of the values (~6e-8), so oneDNN and the reference pick the
// same element.
ref::Array distinct_array(const Shape& shape, std::mt19937& rng) {
  ref::Array a(shape);
  for (int64_t i = 0; i < a.numel(); ++i) a[i] = -1.0 + 2.0 * i / a.numel();
  std::shuffle(a.data.begin(), a.data.end(), rng);
  return a;
}

class MaxPool2dTest : public ::testing::TestWithParam<Case> {
 protected:
  Context context_;
  std::mt19937 rng_{1234};
};

// The reference's dx equals central differences of L = <maxpool(x), r>. L is
// linear in x between argmax changes and the values are tie-free with spacing
// far above eps, so the only error is rounding (bounds in test_util.h).
TEST_P(MaxPool2dTest, ReferenceGradientMatchesFiniteDifferences) {
  const Case& c = GetParam();
  ref::Array x = distinct_array(c.input, rng_);
  const ref::Array r = random_array(ref::max_pool2d_forward(c.options, x).shape, rng_);
  const auto loss = [&] { return dot(ref::max_pool2d_forward(c.options, x), r); };
  EXPECT_TRUE(gradient_matches(x, loss, ref::max_pool2d_backward(c.options, x, r)));
}

// oneDNN (f32) against the double reference fed the same f32-rounded values.
TEST_P(MaxPool2dTest, OnednnMatchesReference) {
  const Case& c = GetParam();
  auto pool = MaxPool2d::create(context_, std::string("pool_") + c.label, c.options, c.input);
  Tensor x = testing::to_tensor(context_, distinct_array(c.input, rng_));
  Tensor y = testing::zeros(context_, pool->output_shape());
  pool->forward(Mode::training, x, y);
  const ref::Array xr = ref::from_tensor(x);
  // The max selects one input element, so the output is exact.
  EXPECT_TRUE(all_close(y, ref::max_pool2d_forward(c.options, xr), 0.0, 0.0));

  Tensor dy = testing::to_tensor(context_, random_array(pool->output_shape(), rng_));
  const ref::Array dx_ref = ref::max_pool2d_backward(c.options, xr, ref::from_tensor(dy));
  // Each dx element sums the dy (in [-1, 1]) of the windows it is the max of:
  // at most ceil(K / S)^2 = 9 here, so the f32 rounding is below
  // 9 * 9 * 6e-8 = 5e-6; 1e-5 bounds it.
  Tensor dx = testing::to_tensor(context_, random_array(c.input, rng_));  // garbage to overwrite
  pool->backward(dy, dx, GradMode::overwrite);
  EXPECT_TRUE(all_close(dx, dx_ref, 1e-5, 1e-5));

  // GradMode::accumulate adds dx onto the existing values (a fanned-out input).
  Tensor dx2 = testing::zeros(context_, c.input);
  dx2.fill(1.0f);
  pool->backward(dy, dx2, GradMode::accumulate);
  ref::Array dx_expected = dx_ref;
  for (auto& v : dx_expected.data) v += 1.0;
  EXPECT_TRUE(all_close(dx2, dx_expected, 1e-5, 1e-5));
}

// Inference forward gives the same output and leaves the workspace of the last
// training forward in place: backward still routes dy through that argmax.
TEST_P(MaxPool2dTest, BackwardFollowsLastTrainingForward) {
  const Case& c = GetParam();
  auto pool = MaxPool2d::create(context_, std::string("pool_") + c.label, c.options, c.input);
  Tensor x_train = testing::to_tensor(context_, distinct_array(c.input, rng_));
  Tensor x_eval = testing::to_tensor(context_, distinct_array(c.input, rng_));
  Tensor y = testing::zeros(context_, pool->output_shape());
  pool->forward(Mode::training, x_train, y);
  pool->forward(Mode::inference, x_eval, y);
  EXPECT_TRUE(all_close(y, ref::max_pool2d_forward(c.options, ref::from_tensor(x_eval)), 0.0, 0.0));

  Tensor dy = testing::to_tensor(context_, random_array(pool->output_shape(), rng_));
  Tensor dx = testing::zeros(context_, c.input);
  pool->backward(dy, dx, GradMode::overwrite);
  // Same bound as OnednnMatchesReference.
  EXPECT_TRUE(all_close(
      dx, ref::max_pool2d_backward(c.options, ref::from_tensor(x_train), ref::from_tensor(dy)),
      1e-5, 1e-5));
}

INSTANTIATE_TEST_SUITE_P(Shapes, MaxPool2dTest, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return std::string(info.param.label); });

// PyTorch's output sizes (torch.nn.functional.max_pool2d, ceil_mode=True).
TEST(MaxPool2dCeilMode, OutputSizesAreTorchs) {
  EXPECT_EQ(window_output_size(112, 3, 2, 0, true), 56);  // BN-Inception's pool1 (floor: 55)
  EXPECT_EQ(window_output_size(28, 3, 2, 0, true), 14);   // its reduction modules (floor: 13)
  EXPECT_EQ(window_output_size(5, 2, 2, 1, true), 3);     // the window past the input dropped
  EXPECT_EQ(window_output_size(6, 3, 2, 1, true), 4);
  EXPECT_EQ(window_output_size(7, 3, 2, 1, true), 4);  // as floor when the stride divides
  EXPECT_EQ(window_output_size(2, 3, 2, 0, true), 0);  // the kernel does not fit
  Context context;
  auto pool = MaxPool2d::create(context, "p", {.kernel = 3, .stride = 2, .ceil_mode = true},
                                Shape{1, 2, 112, 112});
  EXPECT_EQ(pool->output_shape(), (Shape{1, 2, 56, 56}));
}

TEST(MaxPool2dBadInput, RejectsMiswiringAtConstruction) {
  Context context;
  const MaxPool2dOptions o{.kernel = 3, .stride = 2, .padding = 1};
  EXPECT_THROW(MaxPool2d::create(context, "p", o, Shape{2, 3, 8}), Error);     // not (N, C, H, W)
  EXPECT_THROW(MaxPool2d::create(context, "p", o, Shape{2, 0, 8, 8}), Error);  // zero channels
  EXPECT_THROW(MaxPool2d::create(context, "p", {.kernel = 3, .stride = 0}, Shape{1, 1, 8, 8}),
               Error);  // stride 0 (the default: it must be given)
  EXPECT_THROW(
      MaxPool2d::create(context, "p", {.kernel = 3, .stride = 1, .padding = -1}, Shape{1, 1, 8, 8}),
      Error);  // negative padding
  EXPECT_THROW(
      MaxPool2d::create(context, "p", {.kernel = 3, .stride = 1, .padding = 2}, Shape{1, 1, 8, 8}),
      Error);  // padding above kernel / 2: a window could hold only padding
  EXPECT_THROW(MaxPool2d::create(context, "p", {.kernel = 5, .stride = 1}, Shape{1, 1, 4, 8}),
               Error);  // kernel larger than the input
  EXPECT_THROW(MaxPool2d::create(context, "p", {.kernel = 5, .stride = 2}, Shape{1, 1, 8, 4}),
               Error);  // kernel overhangs the input by less than a stride
  try {
    MaxPool2d::create(context, "stem.pool", {.kernel = 9, .stride = 2, .padding = 1},
                      Shape{2, 5, 6, 6});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("stem.pool"), std::string::npos) << message;
    EXPECT_NE(message.find("(2, 5, 6, 6)"), std::string::npos) << message;
  }
}

TEST(MaxPool2dBadInput, RejectsWrongUseAtRunTime) {
  Context context;
  auto pool = MaxPool2d::create(context, "pool", {.kernel = 2, .stride = 2}, Shape{1, 2, 4, 4});
  Tensor x = testing::zeros(context, Shape{1, 2, 4, 4});
  Tensor y = testing::zeros(context, Shape{1, 2, 2, 2});
  EXPECT_THROW(pool->backward(y, x, GradMode::overwrite), Error);  // no training forward yet
  EXPECT_THROW(pool->forward(Mode::training, x, x), Error);        // wrong output shape
  EXPECT_THROW(pool->forward(Mode::training, y, y), Error);        // wrong input shape
  pool->forward(Mode::training, x, y);
  EXPECT_THROW(pool->backward(x, x, GradMode::overwrite), Error);  // wrong dy shape
}

}  // namespace
}  // namespace convnet
