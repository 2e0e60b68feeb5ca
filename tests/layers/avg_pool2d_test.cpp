#include "layers/avg_pool2d.h"

#include <gtest/gtest.h>

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
  AvgPool2dOptions options;
};

// Batch 1, odd spatial sizes, stride 2, padding with and without counting it,
// channels not a multiple of 8, the DenseNet transition (kernel 2, stride 2).
const Case kCases[] = {
    {"densenet_transition_k2_s2", {2, 6, 8, 8}, {.kernel = 2, .stride = 2}},
    {"k2_s2_odd_drops_edge", {1, 5, 7, 9}, {.kernel = 2, .stride = 2}},
    {"k3_s2_p1_include_pad", {2, 3, 7, 7}, {.kernel = 3, .stride = 2, .padding = 1}},
    {"k3_s2_p1_exclude_pad",
     {2, 3, 7, 7},
     {.kernel = 3, .stride = 2, .padding = 1, .count_include_pad = false}},
    {"batch1_k3_s1_p1_exclude_pad",
     {1, 10, 5, 6},
     {.kernel = 3, .stride = 1, .padding = 1, .count_include_pad = false}},
    {"k5_s3_p2_include_pad", {3, 4, 9, 11}, {.kernel = 5, .stride = 3, .padding = 2}},
};

void PrintTo(const Case& c, std::ostream* out) { *out << c.label; }

class AvgPool2dTest : public ::testing::TestWithParam<Case> {
 protected:
  Context context_;
  std::mt19937 rng_{1234};
};

// The reference's dx equals central differences of L = <avgpool(x), r>
// (bounds in tests/testing/test_util.h; L is linear in x, so the only error is
// rounding).
TEST_P(AvgPool2dTest, ReferenceGradientMatchesFiniteDifferences) {
  const Case& c = GetParam();
  ref::Array x = random_array(c.input, rng_);
  const ref::Array r = random_array(ref::avg_pool2d_forward(c.options, x).shape, rng_);
  const auto loss = [&] { return dot(ref::avg_pool2d_forward(c.options, x), r); };
  EXPECT_TRUE(gradient_matches(x, loss, ref::avg_pool2d_backward(c.options, x.shape, r)));
}

// A hand-computed corner: with padding 1 and kernel 3 the top-left window of
// an all-ones input holds 4 ones among 9 positions, so it averages to 4 / 9
// when padding counts (PyTorch's default) and to 1 otherwise.
TEST(AvgPool2dReference, PaddingCountsAsPyTorch) {
  const ref::Array x(Shape{1, 1, 4, 4}, 1.0);
  const ref::Array in = ref::avg_pool2d_forward({.kernel = 3, .stride = 1, .padding = 1}, x);
  const ref::Array ex = ref::avg_pool2d_forward(
      {.kernel = 3, .stride = 1, .padding = 1, .count_include_pad = false}, x);
  EXPECT_DOUBLE_EQ(in.at(0, 0, 0, 0), 4.0 / 9.0);
  EXPECT_DOUBLE_EQ(in.at(0, 0, 0, 1), 6.0 / 9.0);
  EXPECT_DOUBLE_EQ(in.at(0, 0, 1, 1), 1.0);
  EXPECT_DOUBLE_EQ(ex.at(0, 0, 0, 0), 1.0);
  EXPECT_DOUBLE_EQ(ex.at(0, 0, 0, 1), 1.0);
}

// oneDNN (f32) against the double reference fed the same f32-rounded values.
// Each output averages at most K^2 = 25 values in [-1, 1], and each dx element
// sums at most ceil(K / S)^2 = 9 terms |dy| / count <= 1; the f32 rounding is
// below 25 * 6e-8 = 1.5e-6 in both, so 1e-5 is a bound with margin.
TEST_P(AvgPool2dTest, OnednnMatchesReference) {
  const Case& c = GetParam();
  auto pool = AvgPool2d::create(context_, std::string("pool_") + c.label, c.options, c.input);
  Tensor x = testing::to_tensor(context_, random_array(c.input, rng_));
  Tensor y = testing::zeros(context_, pool->output_shape());
  pool->forward(x, y);
  EXPECT_TRUE(all_close(y, ref::avg_pool2d_forward(c.options, ref::from_tensor(x)), 1e-5, 1e-5));

  Tensor dy = testing::to_tensor(context_, random_array(pool->output_shape(), rng_));
  const ref::Array dx_ref = ref::avg_pool2d_backward(c.options, c.input, ref::from_tensor(dy));
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

INSTANTIATE_TEST_SUITE_P(Shapes, AvgPool2dTest, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return std::string(info.param.label); });

TEST(AvgPool2dBadInput, RejectsMiswiringAtConstruction) {
  Context context;
  const AvgPool2dOptions o{.kernel = 2, .stride = 2};
  EXPECT_THROW(AvgPool2d::create(context, "p", o, Shape{2, 3, 8}), Error);     // not (N, C, H, W)
  EXPECT_THROW(AvgPool2d::create(context, "p", o, Shape{2, 3, 0, 8}), Error);  // zero height
  EXPECT_THROW(AvgPool2d::create(context, "p", {.kernel = 0, .stride = 1}, Shape{1, 1, 8, 8}),
               Error);  // kernel 0 (the default: it must be given)
  EXPECT_THROW(
      AvgPool2d::create(context, "p", {.kernel = 3, .stride = 1, .padding = -1}, Shape{1, 1, 8, 8}),
      Error);  // negative padding
  EXPECT_THROW(
      AvgPool2d::create(context, "p", {.kernel = 2, .stride = 1, .padding = 2}, Shape{1, 1, 8, 8}),
      Error);  // padding above kernel / 2
  EXPECT_THROW(
      AvgPool2d::create(context, "p", {.kernel = 9, .stride = 1, .padding = 1}, Shape{1, 1, 6, 6}),
      Error);  // kernel larger than the padded input
  try {
    AvgPool2d::create(context, "transition1.pool", o, Shape{2, 5, 1, 8});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("transition1.pool"), std::string::npos) << message;
    EXPECT_NE(message.find("(2, 5, 1, 8)"), std::string::npos) << message;
  }
}

TEST(AvgPool2dBadInput, RejectsWrongTensorShapesAtRunTime) {
  Context context;
  auto pool = AvgPool2d::create(context, "pool", {.kernel = 2, .stride = 2}, Shape{1, 2, 4, 4});
  Tensor x = testing::zeros(context, Shape{1, 2, 4, 4});
  Tensor y = testing::zeros(context, Shape{1, 2, 2, 2});
  EXPECT_THROW(pool->forward(x, x), Error);
  EXPECT_THROW(pool->forward(y, y), Error);
  EXPECT_THROW(pool->backward(x, x, GradMode::overwrite), Error);
  EXPECT_THROW(pool->backward(y, y, GradMode::overwrite), Error);
}

}  // namespace
}  // namespace convnet
