#include "layers/add.h"

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
  Shape shape;
};

// Batch 1, odd spatial sizes, channels not a multiple of 8, and a rank-2 shape.
const Case kCases[] = {
    {"nchw", {2, 3, 5, 5}},
    {"batch1_odd", {1, 5, 7, 9}},
    {"channels13", {3, 13, 4, 3}},
    {"features", {4, 13}},
};

void PrintTo(const Case& c, std::ostream* out) { *out << c.label; }

class AddTest : public ::testing::TestWithParam<Case> {
 protected:
  Context context_;
  std::mt19937 rng_{1234};
};

// f32 value of a double, back in double: the exact input the tensor holds.
ref::Array rounded(const ref::Array& a) {
  ref::Array r = a;
  for (auto& v : r.data) v = static_cast<float>(v);
  return r;
}

// Elementwise sum of two arrays (the expected result of accumulating).
ref::Array plus(const ref::Array& a, const ref::Array& b) { return ref::add_forward(a, b); }

// The reference's gradients equal central differences of L = <a + b, r>
// (default bounds in tests/testing/test_util.h; L is linear).
TEST_P(AddTest, ReferenceGradientsMatchFiniteDifferences) {
  const Case& c = GetParam();
  ref::Array a = random_array(c.shape, rng_);
  ref::Array b = random_array(c.shape, rng_);
  const ref::Array r = random_array(c.shape, rng_);
  const auto loss = [&] { return dot(ref::add_forward(a, b), r); };
  const ref::AddGrads g = ref::add_backward(r);
  EXPECT_TRUE(gradient_matches(a, loss, g.da));
  EXPECT_TRUE(gradient_matches(b, loss, g.db));
}

// oneDNN against the reference fed the same f32 values. A sum of two f32
// values is correctly rounded: |error| <= 2^-24 |exact| < 1e-7 |exact|, so
// rtol 1e-7 and atol 0 (an exact zero sum is exactly zero in f32). The
// overwriting backward copies dy: tolerance 0.
TEST_P(AddTest, OnednnMatchesReference) {
  const Case& c = GetParam();
  auto add = Add::create(context_, std::string("add_") + c.label, c.shape, c.shape);
  Tensor a = testing::to_tensor(context_, random_array(c.shape, rng_));
  Tensor b = testing::to_tensor(context_, random_array(c.shape, rng_));
  Tensor y = testing::to_tensor(context_, random_array(c.shape, rng_));  // garbage to overwrite
  add->forward(a, b, y);
  EXPECT_TRUE(all_close(y, ref::add_forward(ref::from_tensor(a), ref::from_tensor(b)), 1e-7, 0));

  Tensor dy = testing::to_tensor(context_, random_array(c.shape, rng_));
  const ref::AddGrads g = ref::add_backward(ref::from_tensor(dy));
  Tensor da = testing::to_tensor(context_, random_array(c.shape, rng_));  // garbage to overwrite
  Tensor db = testing::to_tensor(context_, random_array(c.shape, rng_));
  add->backward(dy, da, GradMode::overwrite, db, GradMode::overwrite);
  EXPECT_TRUE(all_close(da, g.da, 0, 0));
  EXPECT_TRUE(all_close(db, g.db, 0, 0));

  // Each gradient follows its own mode; an undefined one is skipped.
  const ref::Array before = rounded(random_array(c.shape, rng_));
  Tensor db2 = testing::to_tensor(context_, before);
  add->backward(dy, da, GradMode::overwrite, db2, GradMode::accumulate);
  EXPECT_TRUE(all_close(da, g.da, 0, 0));
  EXPECT_TRUE(all_close(db2, plus(before, g.db), 1e-7, 0));
  Tensor da2 = testing::to_tensor(context_, before);
  add->backward(dy, da2, GradMode::accumulate, Tensor(), GradMode::overwrite);
  EXPECT_TRUE(all_close(da2, plus(before, g.da), 1e-7, 0));
}

// y == a: the shortcut added onto the block's output buffer (bound as above).
TEST_P(AddTest, InPlaceForward) {
  const Case& c = GetParam();
  auto add = Add::create(context_, "add", c.shape, c.shape);
  Tensor a = testing::to_tensor(context_, random_array(c.shape, rng_));
  Tensor b = testing::to_tensor(context_, random_array(c.shape, rng_));
  const ref::Array expected = ref::add_forward(ref::from_tensor(a), ref::from_tensor(b));
  add->forward(a, b, a);
  EXPECT_TRUE(all_close(a, expected, 1e-7, 0));
}

INSTANTIATE_TEST_SUITE_P(Shapes, AddTest, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return std::string(info.param.label); });

TEST(AddBadInput, RejectsMiswiringAtConstruction) {
  Context context;
  EXPECT_THROW(Add::create(context, "a", Shape{2, 3, 4, 4}, Shape{2, 4, 4, 4}), Error);
  EXPECT_THROW(Add::create(context, "a", Shape{2, 3, 4, 4}, Shape{2, 3, 4}), Error);  // rank
  EXPECT_THROW(Add::create(context, "a", Shape{}, Shape{}), Error);                   // rank 0
  try {
    Add::create(context, "layer2.0.add", Shape{2, 8, 4, 4}, Shape{2, 8, 5, 4});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("layer2.0.add"), std::string::npos) << message;
    EXPECT_NE(message.find("(2, 8, 4, 4)"), std::string::npos) << message;
    EXPECT_NE(message.find("(2, 8, 5, 4)"), std::string::npos) << message;
  }
  try {
    Add::create(context, "layer3.1.add", Shape{0, 8, 4, 4}, Shape{0, 8, 4, 4});  // zero-sized
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("layer3.1.add"), std::string::npos) << message;
    EXPECT_NE(message.find("(0, 8, 4, 4)"), std::string::npos) << message;
  }
}

TEST(AddBadInput, RejectsWrongTensorsAtRunTime) {
  Context context;
  auto add = Add::create(context, "add", Shape{2, 2, 3, 3}, Shape{2, 2, 3, 3});
  Tensor x = testing::zeros(context, Shape{2, 2, 3, 3});
  Tensor wrong = testing::zeros(context, Shape{2, 2, 3, 4});
  EXPECT_THROW(add->forward(x, wrong, x), Error);
  EXPECT_THROW(add->forward(x, x, wrong), Error);
  EXPECT_THROW(add->backward(x, wrong, GradMode::overwrite, x, GradMode::overwrite), Error);
}

}  // namespace
}  // namespace convnet
