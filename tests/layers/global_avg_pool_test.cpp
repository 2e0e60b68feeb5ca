#include "layers/global_avg_pool.h"

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
};

// Batch 1, odd and non-square spatial sizes, a 1 x 1 plane, channels not a
// multiple of 8, the ResNet head (7 x 7).
const Case kCases[] = {
    {"resnet_head_7x7", {2, 16, 7, 7}},
    {"batch1_odd", {1, 5, 9, 7}},
    {"plane_1x1", {3, 10, 1, 1}},
    {"c17_13x11", {2, 17, 13, 11}},
};

void PrintTo(const Case& c, std::ostream* out) { *out << c.label; }

class GlobalAvgPoolTest : public ::testing::TestWithParam<Case> {
 protected:
  Context context_;
  std::mt19937 rng_{1234};
};

// The reference's dx equals central differences of L = <gap(x), r> (bounds in
// tests/testing/test_util.h; L is linear in x, so the only error is rounding).
TEST_P(GlobalAvgPoolTest, ReferenceGradientMatchesFiniteDifferences) {
  const Case& c = GetParam();
  ref::Array x = random_array(c.input, rng_);
  const ref::Array r = random_array(Shape{c.input[0], c.input[1]}, rng_);
  const auto loss = [&] { return dot(ref::global_avg_pool_forward(x), r); };
  EXPECT_TRUE(gradient_matches(x, loss, ref::global_avg_pool_backward(x.shape, r)));
}

// oneDNN (f32) against the double reference fed the same f32-rounded values.
TEST_P(GlobalAvgPoolTest, OnednnMatchesReference) {
  const Case& c = GetParam();
  auto pool = GlobalAvgPool::create(context_, std::string("gap_") + c.label, c.input);
  ASSERT_EQ(pool->output_shape(), (Shape{c.input[0], c.input[1]}));
  Tensor x = testing::to_tensor(context_, random_array(c.input, rng_));
  Tensor y = testing::zeros(context_, pool->output_shape());
  pool->forward(x, y);
  // Each output averages H * W <= 143 values in [-1, 1]: the f32 sum is off by
  // at most 143 * 6e-8 * 143, i.e. 9e-6 after the division (typically far
  // less), so 1e-4 is a bound with margin.
  EXPECT_TRUE(all_close(y, ref::global_avg_pool_forward(ref::from_tensor(x)), 1e-4, 1e-4));

  Tensor dy = testing::to_tensor(context_, random_array(pool->output_shape(), rng_));
  const ref::Array dx_ref = ref::global_avg_pool_backward(c.input, ref::from_tensor(dy));
  // dx = dy / (H * W): one f32 rounding (~6e-8 relative), plus one more for the
  // accumulate below; 1e-6 bounds both.
  Tensor dx = testing::to_tensor(context_, random_array(c.input, rng_));  // garbage to overwrite
  pool->backward(dy, dx, GradMode::overwrite);
  EXPECT_TRUE(all_close(dx, dx_ref, 1e-6, 1e-6));

  // GradMode::accumulate adds dx onto the existing values (a fanned-out input).
  Tensor dx2 = testing::zeros(context_, c.input);
  dx2.fill(1.0f);
  pool->backward(dy, dx2, GradMode::accumulate);
  ref::Array dx_expected = dx_ref;
  for (auto& v : dx_expected.data) v += 1.0;
  EXPECT_TRUE(all_close(dx2, dx_expected, 1e-6, 1e-6));
}

INSTANTIATE_TEST_SUITE_P(Shapes, GlobalAvgPoolTest, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return std::string(info.param.label); });

TEST(GlobalAvgPoolBadInput, RejectsMiswiringAtConstruction) {
  Context context;
  EXPECT_THROW(GlobalAvgPool::create(context, "g", Shape{2, 3}), Error);        // not (N, C, H, W)
  EXPECT_THROW(GlobalAvgPool::create(context, "g", Shape{2, 3, 0, 4}), Error);  // zero height
  EXPECT_THROW(GlobalAvgPool::create(context, "g", Shape{0, 3, 4, 4}), Error);  // zero batch
  try {
    GlobalAvgPool::create(context, "head.pool", Shape{2, 5, 7, 0});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("head.pool"), std::string::npos) << message;
    EXPECT_NE(message.find("(2, 5, 7, 0)"), std::string::npos) << message;
  }
}

TEST(GlobalAvgPoolBadInput, RejectsWrongTensorShapesAtRunTime) {
  Context context;
  auto pool = GlobalAvgPool::create(context, "gap", Shape{2, 3, 4, 4});
  Tensor x = testing::zeros(context, Shape{2, 3, 4, 4});
  Tensor y = testing::zeros(context, Shape{2, 3});
  Tensor y4 = testing::zeros(context, Shape{2, 3, 1, 1});  // the spatial dims are dropped
  EXPECT_THROW(pool->forward(x, y4), Error);
  EXPECT_THROW(pool->forward(y, y), Error);
  EXPECT_THROW(pool->backward(y4, x, GradMode::overwrite), Error);
}

}  // namespace
}  // namespace convnet
