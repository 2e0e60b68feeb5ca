#include "layers/channel_gate.h"

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
  Shape input;  // (N, C, H, W); the gate is (N, C)
};

// Batch 1, odd spatial sizes, channels not a multiple of 8, and 1x1 maps.
const Case kCases[] = {
    {"nchw", {2, 3, 5, 5}},
    {"batch1_odd", {1, 5, 7, 9}},
    {"channels13", {3, 13, 3, 1}},
    {"1x1", {4, 6, 1, 1}},
};

void PrintTo(const Case& c, std::ostream* out) { *out << c.label; }

Shape gate_shape(const Shape& input) { return Shape{input[0], input[1]}; }

class ChannelGateTest : public ::testing::TestWithParam<Case> {
 protected:
  // Gate logits in [-3, 3]: sigmoid from 0.05 to 0.95, gates both nearly
  // closed and nearly open.
  ref::Array random_logits(const Shape& input) {
    return random_array(gate_shape(input), rng_, -3.0, 3.0);
  }

  Context context_;
  std::mt19937 rng_{1234};
};

// The reference's gradients equal central differences of L = <x * sigmoid(s), r>
// (default bounds in tests/testing/test_util.h: L is linear in x, and in s its
// third derivative is below 0.2 * sum|x r| <= 13, so the truncation error
// eps^2 / 6 * 13 ~ 2e-10 stays far below atol 1e-7).
TEST_P(ChannelGateTest, ReferenceGradientsMatchFiniteDifferences) {
  const Case& c = GetParam();
  ref::Array x = random_array(c.input, rng_);
  ref::Array s = random_logits(c.input);
  const ref::Array r = random_array(c.input, rng_);
  const auto loss = [&] { return dot(ref::channel_gate_forward(x, s), r); };
  const ref::ChannelGateGrads g = ref::channel_gate_backward(x, s, r);
  EXPECT_TRUE(gradient_matches(x, loss, g.dx));
  EXPECT_TRUE(gradient_matches(s, loss, g.ds));
}

// oneDNN against the reference fed the same f32 values.
//   y, dx: a product of an f32 value in [-1, 1] and oneDNN's f32 sigmoid,
//     whose vectorised exp is accurate to a few ulp (relative error ~3e-7
//     including the division); rtol 2e-6 leaves a margin of ~5x, and atol
//     1e-7 covers results that round to tiny values.
//   ds: the H*W-term dot product is accumulated in double (error ~1e-16), so
//     ds carries the gate's error through g * (1 - g): relative error up to
//     3e-7 * (1 + g / (1 - g)) <= 3e-7 * 20 = 6e-6 for g <= 0.95, hence rtol
//     2e-5; atol 1e-7 for sums that cancel to near zero.
// Accumulating adds one correctly rounded f32 sum (2^-24 relative) on top.
TEST_P(ChannelGateTest, OnednnMatchesReference) {
  const Case& c = GetParam();
  auto gate =
      ChannelGate::create(context_, std::string("gate_") + c.label, c.input, gate_shape(c.input));
  Tensor x = testing::to_tensor(context_, random_array(c.input, rng_));
  Tensor s = testing::to_tensor(context_, random_logits(c.input));
  Tensor y = testing::to_tensor(context_, random_array(c.input, rng_));  // garbage to overwrite
  gate->forward(x, s, y);
  const ref::Array xr = ref::from_tensor(x), sr = ref::from_tensor(s);
  EXPECT_TRUE(all_close(y, ref::channel_gate_forward(xr, sr), 2e-6, 1e-7));

  Tensor dy = testing::to_tensor(context_, random_array(c.input, rng_));
  const ref::ChannelGateGrads g = ref::channel_gate_backward(xr, sr, ref::from_tensor(dy));
  Tensor dx = testing::to_tensor(context_, random_array(c.input, rng_));  // garbage to overwrite
  Tensor ds = testing::to_tensor(context_, random_array(gate_shape(c.input), rng_));
  gate->backward(x, s, dy, dx, GradMode::overwrite, ds, GradMode::overwrite);
  EXPECT_TRUE(all_close(dx, g.dx, 2e-6, 1e-7));
  EXPECT_TRUE(all_close(ds, g.ds, 2e-5, 1e-7));

  // GradMode::accumulate adds onto the existing values, each gradient by its
  // own mode; an undefined gradient is skipped.
  Tensor dx2 = testing::zeros(context_, c.input);
  dx2.fill(1.0f);
  Tensor ds2 = testing::zeros(context_, gate_shape(c.input));
  ds2.fill(-0.5f);
  gate->backward(x, s, dy, dx2, GradMode::accumulate, ds2, GradMode::accumulate);
  ref::Array dx_expected = g.dx, ds_expected = g.ds;
  for (auto& v : dx_expected.data) v += 1.0;
  for (auto& v : ds_expected.data) v -= 0.5;
  EXPECT_TRUE(all_close(dx2, dx_expected, 2e-6, 1e-7));
  EXPECT_TRUE(all_close(ds2, ds_expected, 2e-5, 1e-7));
  gate->backward(x, s, dy, Tensor(), GradMode::overwrite, ds2, GradMode::overwrite);
  EXPECT_TRUE(all_close(ds2, g.ds, 2e-5, 1e-7));
  gate->backward(x, s, dy, dx2, GradMode::overwrite, Tensor(), GradMode::overwrite);
  EXPECT_TRUE(all_close(dx2, g.dx, 2e-6, 1e-7));
}

// y == x in forward and dx == dy in backward (ds is computed before dy is
// overwritten). Bounds as above.
TEST_P(ChannelGateTest, InPlace) {
  const Case& c = GetParam();
  auto gate = ChannelGate::create(context_, "gate", c.input, gate_shape(c.input));
  Tensor x = testing::to_tensor(context_, random_array(c.input, rng_));
  Tensor s = testing::to_tensor(context_, random_logits(c.input));
  const ref::Array xr = ref::from_tensor(x), sr = ref::from_tensor(s);
  Tensor y = testing::zeros(context_, c.input);
  y.copy_from(x);
  gate->forward(y, s, y);
  EXPECT_TRUE(all_close(y, ref::channel_gate_forward(xr, sr), 2e-6, 1e-7));

  Tensor dy = testing::to_tensor(context_, random_array(c.input, rng_));
  const ref::ChannelGateGrads g = ref::channel_gate_backward(xr, sr, ref::from_tensor(dy));
  Tensor ds = testing::zeros(context_, gate_shape(c.input));
  gate->backward(x, s, dy, dy, GradMode::overwrite, ds, GradMode::overwrite);
  EXPECT_TRUE(all_close(dy, g.dx, 2e-6, 1e-7));
  EXPECT_TRUE(all_close(ds, g.ds, 2e-5, 1e-7));
}

INSTANTIATE_TEST_SUITE_P(Shapes, ChannelGateTest, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return std::string(info.param.label); });

TEST(ChannelGateBadInput, RejectsMiswiringAtConstruction) {
  Context context;
  EXPECT_THROW(ChannelGate::create(context, "g", Shape{2, 8, 4, 4}, Shape{2, 4}), Error);
  EXPECT_THROW(ChannelGate::create(context, "g", Shape{2, 8, 4, 4}, Shape{2, 8, 1, 1}), Error);
  EXPECT_THROW(ChannelGate::create(context, "g", Shape{2, 8, 4}, Shape{2, 8}), Error);  // rank
  try {
    ChannelGate::create(context, "layer1.0.se.gate", Shape{2, 16, 8, 8}, Shape{16, 2});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("layer1.0.se.gate"), std::string::npos) << message;
    EXPECT_NE(message.find("(2, 16, 8, 8)"), std::string::npos) << message;
    EXPECT_NE(message.find("(16, 2)"), std::string::npos) << message;
  }
  try {
    ChannelGate::create(context, "layer2.0.se.gate", Shape{2, 16, 0, 8}, Shape{2, 16});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("layer2.0.se.gate"), std::string::npos) << message;
    EXPECT_NE(message.find("(2, 16, 0, 8)"), std::string::npos) << message;
    EXPECT_NE(message.find("(2, 16)"), std::string::npos) << message;
  }
}

TEST(ChannelGateBadInput, RejectsWrongTensorsAtRunTime) {
  Context context;
  auto gate = ChannelGate::create(context, "gate", Shape{2, 3, 4, 4}, Shape{2, 3});
  Tensor x = testing::zeros(context, Shape{2, 3, 4, 4});
  Tensor s = testing::zeros(context, Shape{2, 3});
  Tensor wrong = testing::zeros(context, Shape{3, 2});
  EXPECT_THROW(gate->forward(x, wrong, x), Error);
  EXPECT_THROW(gate->forward(x, s, testing::zeros(context, Shape{2, 3, 4, 5})), Error);
  EXPECT_THROW(gate->backward(x, s, x, x, GradMode::overwrite, wrong, GradMode::overwrite), Error);
}

}  // namespace
}  // namespace convnet
