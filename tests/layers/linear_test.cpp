#include "layers/linear.h"

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
  Shape input;  // (N, in_features)
  LinearOptions options;
};

// Batch 1, feature counts not a multiple of 8, with and without bias, a 1 -> 1 map.
const Case kCases[] = {
    {"bias", {2, 5}, {.in_features = 5, .out_features = 3}},
    {"batch1_no_bias", {1, 7}, {.in_features = 7, .out_features = 10, .bias = false}},
    {"wide_bias", {4, 20}, {.in_features = 20, .out_features = 9}},
    {"scalar_map", {3, 1}, {.in_features = 1, .out_features = 1}},
    {"no_bias", {5, 13}, {.in_features = 13, .out_features = 17, .bias = false}},
};

void PrintTo(const Case& c, std::ostream* out) { *out << c.label; }

class LinearTest : public ::testing::TestWithParam<Case> {
 protected:
  Context context_;
  std::mt19937 rng_{1234};
};

Shape weight_shape(const LinearOptions& o) { return Shape{o.out_features, o.in_features}; }

// The reference's gradients equal central differences of L = <x w^T + b, r>
// (bounds in tests/testing/test_util.h; L is linear in each argument, so the
// only error is rounding).
TEST_P(LinearTest, ReferenceGradientsMatchFiniteDifferences) {
  const Case& c = GetParam();
  ref::Array x = random_array(c.input, rng_);
  ref::Array w = random_array(weight_shape(c.options), rng_);
  ref::Array b = random_array(Shape{c.options.out_features}, rng_);
  const ref::Array* bias = c.options.bias ? &b : nullptr;
  const ref::Array r = random_array(Shape{c.input[0], c.options.out_features}, rng_);
  const auto loss = [&] { return dot(ref::linear_forward(x, w, bias), r); };
  const ref::LinearGrads g = ref::linear_backward(x, w, r);
  EXPECT_TRUE(gradient_matches(x, loss, g.dx));
  EXPECT_TRUE(gradient_matches(w, loss, g.dweight));
  if (c.options.bias) {
    EXPECT_TRUE(gradient_matches(b, loss, g.dbias));
  }
}

// oneDNN (f32) against the double reference fed the same f32-rounded values.
// Each y element sums in_features + 1 <= 21 terms, each dx element
// out_features <= 17 products, each dweight/dbias element N <= 5 products, all
// of magnitude <= 1: f32 accumulation error is at most ~21 * 6e-8 * 21 = 3e-5
// (typically far less), so atol 1e-4 with rtol 1e-4 is a bound with margin.
TEST_P(LinearTest, OnednnMatchesReference) {
  const Case& c = GetParam();
  auto fc = Linear::create(context_, std::string("fc_") + c.label, c.options, c.input);
  Tensor x = testing::to_tensor(context_, random_array(c.input, rng_));
  Tensor w = testing::to_tensor(context_, random_array(fc->weight_shape(), rng_));
  Tensor b = c.options.bias ? testing::to_tensor(context_, random_array(fc->bias_shape(), rng_))
                            : Tensor();
  Tensor y = testing::zeros(context_, fc->output_shape());
  fc->forward(x, w, b, y);

  const ref::Array xr = ref::from_tensor(x), wr = ref::from_tensor(w);
  const ref::Array br = c.options.bias ? ref::from_tensor(b) : ref::Array();
  EXPECT_TRUE(
      all_close(y, ref::linear_forward(xr, wr, c.options.bias ? &br : nullptr), 1e-4, 1e-4));

  Tensor dy = testing::to_tensor(context_, random_array(fc->output_shape(), rng_));
  const ref::LinearGrads g = ref::linear_backward(xr, wr, ref::from_tensor(dy));

  // Parameter gradients accumulate onto what is there; dx overwrites.
  Tensor dx = testing::to_tensor(context_, random_array(c.input, rng_));  // garbage to overwrite
  Tensor dw = testing::zeros(context_, fc->weight_shape());
  dw.fill(0.5f);
  Tensor db = c.options.bias ? testing::zeros(context_, fc->bias_shape()) : Tensor();
  if (c.options.bias) db.fill(-0.25f);
  fc->backward(x, w, dy, dx, GradMode::overwrite, dw, db);
  EXPECT_TRUE(all_close(dx, g.dx, 1e-4, 1e-4));
  ref::Array dw_expected = g.dweight;
  for (auto& v : dw_expected.data) v += 0.5;
  EXPECT_TRUE(all_close(dw, dw_expected, 1e-4, 1e-4));
  ref::Array db_expected = g.dbias;
  for (auto& v : db_expected.data) v -= 0.25;
  if (c.options.bias) {
    EXPECT_TRUE(all_close(db, db_expected, 1e-4, 1e-4));
  }

  // GradMode::accumulate adds dx onto the existing values (a fanned-out input);
  // the parameter gradients accumulate a second time.
  Tensor dx2 = testing::zeros(context_, c.input);
  dx2.fill(1.0f);
  fc->backward(x, w, dy, dx2, GradMode::accumulate, dw, db);
  ref::Array dx_expected = g.dx;
  for (auto& v : dx_expected.data) v += 1.0;
  EXPECT_TRUE(all_close(dx2, dx_expected, 1e-4, 1e-4));
  for (int64_t i = 0; i < dw_expected.numel(); ++i) dw_expected[i] += g.dweight[i];
  EXPECT_TRUE(all_close(dw, dw_expected, 1e-4, 1e-4));

  // An undefined dx (the network's first layer) skips backward data only.
  fc->backward(x, w, dy, Tensor(), GradMode::overwrite, dw, db);
  for (int64_t i = 0; i < dw_expected.numel(); ++i) dw_expected[i] += g.dweight[i];
  EXPECT_TRUE(all_close(dw, dw_expected, 1e-4, 1e-4));
}

INSTANTIATE_TEST_SUITE_P(Shapes, LinearTest, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return std::string(info.param.label); });

TEST(LinearBadInput, RejectsMiswiringAtConstruction) {
  Context context;
  const LinearOptions o{.in_features = 8, .out_features = 4};
  EXPECT_THROW(Linear::create(context, "fc", o, Shape{2, 5}), Error);        // feature mismatch
  EXPECT_THROW(Linear::create(context, "fc", o, Shape{2, 8, 1, 1}), Error);  // not (N, in)
  EXPECT_THROW(Linear::create(context, "fc", o, Shape{0, 8}), Error);        // zero-sized batch
  EXPECT_THROW(Linear::create(context, "fc", {.in_features = 8, .out_features = 0}, Shape{2, 8}),
               Error);  // no outputs
  try {
    Linear::create(context, "head.fc", o, Shape{2, 5});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("head.fc"), std::string::npos) << message;
    EXPECT_NE(message.find("(2, 5)"), std::string::npos) << message;
  }
}

TEST(LinearBadInput, RejectsWrongTensorsAtRunTime) {
  Context context;
  auto fc = Linear::create(context, "fc", {.in_features = 3, .out_features = 2, .bias = false},
                           Shape{4, 3});
  Tensor x = testing::zeros(context, Shape{4, 3});
  Tensor w = testing::zeros(context, Shape{2, 3});
  Tensor y = testing::zeros(context, Shape{4, 2});
  Tensor b = testing::zeros(context, Shape{2});
  EXPECT_THROW(fc->forward(x, w, Tensor(), x), Error);  // wrong output shape
  EXPECT_THROW(fc->forward(x, x, Tensor(), y), Error);  // wrong weight shape
  EXPECT_THROW(fc->forward(x, w, b, y), Error);         // bias given to a layer without bias
}

}  // namespace
}  // namespace convnet
