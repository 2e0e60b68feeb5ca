#include "layers/relu.h"

#include <gtest/gtest.h>

#include <cmath>

#include "tests/testing/test_util.h"

namespace convnet {
namespace {

using testing::all_close;
using testing::dot;
using testing::gradient_matches;
using testing::random_array;

struct Case {
  const char* label;
  Shape shape;
};

// Batch 1, odd spatial sizes, channels not a multiple of 8, and ranks other than 4.
const Case kCases[] = {
    {"nchw", {2, 3, 5, 5}},
    {"batch1_odd", {1, 5, 7, 9}},
    {"channels13", {3, 13, 4, 3}},
    {"features", {4, 13}},
    {"vector", {7}},
};

void PrintTo(const Case& c, std::ostream* out) { *out << c.label; }

// Uniform in [-1, -0.1] u [0.1, 1]: the finite-difference step (1e-5) never
// crosses the kink at 0, where ReLU has no derivative.
ref::Array away_from_zero(const Shape& shape, std::mt19937& rng) {
  ref::Array a = random_array(shape, rng);
  for (auto& v : a.data) v = std::copysign(0.1 + 0.9 * std::abs(v), v);
  return a;
}

class ReluTest : public ::testing::TestWithParam<Case> {
 protected:
  Context context_;
  std::mt19937 rng_{1234};
};

// The reference's gradient equals central differences of L = <relu(x), r>
// (default bounds in tests/testing/test_util.h: L is piecewise linear and no
// step crosses a kink, so the only error is rounding).
TEST_P(ReluTest, ReferenceGradientMatchesFiniteDifferences) {
  const Case& c = GetParam();
  ref::Array x = away_from_zero(c.shape, rng_);
  const ref::Array r = random_array(c.shape, rng_);
  const auto loss = [&] { return dot(ref::relu_forward(x), r); };
  EXPECT_TRUE(gradient_matches(x, loss, ref::relu_backward(ref::relu_forward(x), r)));
}

// oneDNN against the reference fed the same f32 values. ReLU only selects
// values (x or 0, dy or 0), so forward and the overwriting backward are
// exact: tolerance 0. Accumulate adds two f32 values, which IEEE rounds
// correctly: |error| <= 2^-24 |exact sum| < 1e-7 |exact sum|, hence rtol 1e-7
// and atol 0 (an exact zero sum is exactly zero in f32 too).
TEST_P(ReluTest, OnednnMatchesReference) {
  const Case& c = GetParam();
  auto relu = Relu::create(context_, std::string("relu_") + c.label, c.shape);
  ref::Array x_values = random_array(c.shape, rng_);
  x_values[0] = 0.0;  // the subgradient at 0 is 0
  Tensor x = testing::to_tensor(context_, x_values);
  Tensor y = testing::to_tensor(context_, random_array(c.shape, rng_));  // garbage to overwrite
  relu->forward(x, y);
  const ref::Array yr = ref::relu_forward(ref::from_tensor(x));
  EXPECT_TRUE(all_close(y, yr, 0, 0));

  Tensor dy = testing::to_tensor(context_, random_array(c.shape, rng_));
  const ref::Array dx_expected = ref::relu_backward(yr, ref::from_tensor(dy));
  Tensor dx = testing::to_tensor(context_, random_array(c.shape, rng_));  // garbage to overwrite
  relu->backward(y, dy, dx, GradMode::overwrite);
  EXPECT_TRUE(all_close(dx, dx_expected, 0, 0));

  // GradMode::accumulate adds onto the existing values (a fanned-out input).
  const ref::Array before = random_array(c.shape, rng_);
  Tensor dx2 = testing::to_tensor(context_, before);
  relu->backward(y, dy, dx2, GradMode::accumulate);
  ref::Array sum = ref::from_tensor(dx2);
  for (int64_t i = 0; i < sum.numel(); ++i) sum[i] = static_cast<float>(before[i]) + dx_expected[i];
  EXPECT_TRUE(all_close(dx2, sum, 1e-7, 0));
}

// Forward in place (y == x) and backward from that y: exact, as above.
TEST_P(ReluTest, InPlaceForwardThenBackwardFromOutput) {
  const Case& c = GetParam();
  auto relu = Relu::create(context_, "relu", c.shape);
  Tensor x = testing::to_tensor(context_, random_array(c.shape, rng_));
  const ref::Array yr = ref::relu_forward(ref::from_tensor(x));
  relu->forward(x, x);
  EXPECT_TRUE(all_close(x, yr, 0, 0));
  Tensor dy = testing::to_tensor(context_, random_array(c.shape, rng_));
  Tensor dx = testing::zeros(context_, c.shape);
  relu->backward(x, dy, dx, GradMode::overwrite);
  EXPECT_TRUE(all_close(dx, ref::relu_backward(yr, ref::from_tensor(dy)), 0, 0));
}

INSTANTIATE_TEST_SUITE_P(Shapes, ReluTest, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return std::string(info.param.label); });

TEST(ReluBadInput, RejectsBadShapesAtConstruction) {
  Context context;
  EXPECT_THROW(Relu::create(context, "r", Shape{}), Error);  // rank 0
  try {
    Relu::create(context, "stage2.relu", Shape{2, 0, 8, 8});  // zero-sized dimension
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("stage2.relu"), std::string::npos) << message;
    EXPECT_NE(message.find("(2, 0, 8, 8)"), std::string::npos) << message;
  }
}

TEST(ReluBadInput, RejectsWrongTensorsAtRunTime) {
  Context context;
  auto relu = Relu::create(context, "relu", Shape{2, 2, 3, 3});
  Tensor x = testing::zeros(context, Shape{2, 2, 3, 3});
  Tensor wrong = testing::zeros(context, Shape{2, 2, 3, 4});
  EXPECT_THROW(relu->forward(x, wrong), Error);
  EXPECT_THROW(relu->forward(wrong, x), Error);
  EXPECT_THROW(relu->backward(x, x, wrong, GradMode::overwrite), Error);
  // A strided view of the right shape: the primitive was built for contiguous memory.
  Tensor big = testing::zeros(context, Shape{2, 4, 3, 3});
  EXPECT_THROW(relu->forward(big.slice(1, 1, 3), x), Error);
}

}  // namespace
}  // namespace convnet
