#include "layers/concat.h"

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
  std::vector<Shape> inputs;  // (N, C_k, H, W) each
};

// Batch 1, odd spatial sizes, channel counts not a multiple of 8, a single
// input, and 1x1 maps (the transition into a classifier).
const Case kCases[] = {
    {"two", {{2, 3, 5, 5}, {2, 4, 5, 5}}},
    {"batch1_three_odd", {{1, 5, 7, 9}, {1, 1, 7, 9}, {1, 6, 7, 9}}},
    {"single", {{2, 3, 3, 3}}},
    {"four_1x1", {{3, 2, 1, 1}, {3, 7, 1, 1}, {3, 1, 1, 1}, {3, 3, 1, 1}}},
};

void PrintTo(const Case& c, std::ostream* out) { *out << c.label; }

class ConcatTest : public ::testing::TestWithParam<Case> {
 protected:
  std::vector<ref::Array> random_inputs(const Case& c) {
    std::vector<ref::Array> xs;
    for (const Shape& s : c.inputs) xs.push_back(random_array(s, rng_));
    return xs;
  }
  std::vector<Tensor> tensors(const std::vector<ref::Array>& arrays) {
    std::vector<Tensor> ts;
    for (const ref::Array& a : arrays) ts.push_back(testing::to_tensor(context_, a));
    return ts;
  }
  static std::vector<ref::Array> arrays(const std::vector<Tensor>& tensors) {
    std::vector<ref::Array> as;
    for (const Tensor& t : tensors) as.push_back(ref::from_tensor(t));
    return as;
  }

  Context context_;
  std::mt19937 rng_{1234};
};

// The reference's gradients equal central differences of L = <cat(xs), r>
// (default bounds in tests/testing/test_util.h; L is linear).
TEST_P(ConcatTest, ReferenceGradientsMatchFiniteDifferences) {
  const Case& c = GetParam();
  std::vector<ref::Array> xs = random_inputs(c);
  const ref::Array r = random_array(ref::concat_forward(xs).shape, rng_);
  const auto loss = [&] { return dot(ref::concat_forward(xs), r); };
  const std::vector<ref::Array> g = ref::concat_backward(c.inputs, r);
  ASSERT_EQ(g.size(), xs.size());
  for (std::size_t k = 0; k < xs.size(); ++k) EXPECT_TRUE(gradient_matches(xs[k], loss, g[k]));
}

// oneDNN against the reference fed the same f32 values. Concat and its
// overwriting backward only copy values: tolerance 0. Accumulating adds two
// f32 values, correctly rounded: |error| <= 2^-24 |exact| < 1e-7 |exact|,
// hence rtol 1e-7 and atol 0.
TEST_P(ConcatTest, OnednnMatchesReference) {
  const Case& c = GetParam();
  auto concat = Concat::create(context_, std::string("concat_") + c.label, {}, c.inputs);
  const std::vector<Tensor> xs = tensors(random_inputs(c));
  Tensor y = testing::to_tensor(context_, random_array(concat->output_shape(), rng_));  // garbage
  concat->forward(xs, y);
  EXPECT_TRUE(all_close(y, ref::concat_forward(arrays(xs)), 0, 0));

  Tensor dy = testing::to_tensor(context_, random_array(concat->output_shape(), rng_));
  const std::vector<ref::Array> g = ref::concat_backward(c.inputs, ref::from_tensor(dy));
  std::vector<Tensor> dxs = tensors(random_inputs(c));  // garbage to overwrite
  concat->backward(dy, dxs, std::vector<GradMode>(dxs.size(), GradMode::overwrite));
  for (std::size_t k = 0; k < dxs.size(); ++k) EXPECT_TRUE(all_close(dxs[k], g[k], 0, 0));

  // Each input gradient follows its own mode: accumulate onto even inputs,
  // overwrite odd ones; then skip input 0 (undefined) and overwrite the rest.
  const std::vector<Tensor> before = tensors(random_inputs(c));
  std::vector<Tensor> dxs2, dxs3;
  std::vector<GradMode> modes;
  for (std::size_t k = 0; k < before.size(); ++k) {
    dxs2.push_back(testing::zeros(context_, c.inputs[k]));
    dxs2[k].copy_from(before[k]);
    modes.push_back(k % 2 == 0 ? GradMode::accumulate : GradMode::overwrite);
    dxs3.push_back(k == 0 ? Tensor() : testing::zeros(context_, c.inputs[k]));
  }
  concat->backward(dy, dxs2, modes);
  concat->backward(dy, dxs3, std::vector<GradMode>(dxs3.size(), GradMode::overwrite));
  for (std::size_t k = 0; k < dxs2.size(); ++k) {
    ref::Array expected = g[k];
    const ref::Array previous = ref::from_tensor(before[k]);
    if (modes[k] == GradMode::accumulate)
      for (int64_t i = 0; i < expected.numel(); ++i) expected[i] += previous[i];
    EXPECT_TRUE(all_close(dxs2[k], expected, 1e-7, 0)) << "input " << k;
    if (k > 0) {
      EXPECT_TRUE(all_close(dxs3[k], g[k], 0, 0)) << "input " << k;
    }
  }
}

// The output (and dy) as a channel slice of a larger (N, 2 + C + 3, H, W)
// buffer, as in a DenseNet block's shared feature buffer: forward writes
// exactly the slice's channels (sentinels in the others stay untouched), and
// backward reads the slice of a larger gradient buffer. Copies: tolerance 0.
TEST_P(ConcatTest, OutputIsChannelSliceOfLargerBuffer) {
  const Case& c = GetParam();
  Shape out = Concat::create(context_, "probe", {}, c.inputs)->output_shape();
  const int64_t before_channels = 2, after_channels = 3, channels = out[1];
  Shape big_shape = out;
  big_shape[1] = before_channels + channels + after_channels;
  Tensor big = testing::zeros(context_, big_shape);
  const float sentinel = 1234.5f;
  big.fill(sentinel);
  Tensor y = big.slice(1, before_channels, before_channels + channels);

  auto concat =
      Concat::create(context_, "concat_into_slice", {.output_strides = big.strides()}, c.inputs);
  const std::vector<Tensor> xs = tensors(random_inputs(c));
  concat->forward(xs, y);
  EXPECT_TRUE(all_close(y, ref::concat_forward(arrays(xs)), 0, 0));
  EXPECT_TRUE(all_close(big.slice(1, 0, before_channels),
                        ref::Array(Shape{out[0], before_channels, out[2], out[3]}, sentinel), 0,
                        0));
  EXPECT_TRUE(all_close(big.slice(1, before_channels + channels, big_shape[1]),
                        ref::Array(Shape{out[0], after_channels, out[2], out[3]}, sentinel), 0, 0));

  Tensor dbig = testing::to_tensor(context_, random_array(big_shape, rng_));
  Tensor dy = dbig.slice(1, before_channels, before_channels + channels);
  const std::vector<ref::Array> g = ref::concat_backward(c.inputs, ref::from_tensor(dy));
  std::vector<Tensor> dxs = tensors(random_inputs(c));
  concat->backward(dy, dxs, std::vector<GradMode>(dxs.size(), GradMode::overwrite));
  for (std::size_t k = 0; k < dxs.size(); ++k) EXPECT_TRUE(all_close(dxs[k], g[k], 0, 0));

  // A contiguous y does not have the layout the primitive was built for
  // (unless N == 1, where the batch stride is never used).
  if (out[0] > 1) {
    EXPECT_THROW(concat->forward(xs, testing::zeros(context_, out)), Error);
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, ConcatTest, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return std::string(info.param.label); });

// On the CPU, inputs of whole channel blocks concatenate in the blocked
// layouts (BN-Inception's branches): the same copies as the reference, and
// backward's sub-memory reorders copy (tolerance 0), accumulate (one rounding)
// or skip as each input's mode says.
TEST(ConcatBlocked, WholeBlocksMatchTheReference) {
  Context context;
  std::mt19937 rng(7);
  const std::vector<Shape> shapes{{2, 16, 3, 5}, {2, 32, 3, 5}, {2, 48, 3, 5}};
  const auto random_f32 = [&](const Shape& shape) {  // values a float holds exactly
    return ref::from_tensor(testing::to_tensor(context, random_array(shape, rng)));
  };
  for (Layout layout : {Layout::nchw8c, Layout::nchw16c}) {
    SCOPED_TRACE(to_string(layout));
    auto concat = Concat::create(context, "cat", {.layout = layout}, shapes);
    std::vector<ref::Array> xs, before;
    std::vector<Tensor> xt, dxs;
    for (const Shape& shape : shapes) {
      xs.push_back(random_f32(shape));
      before.push_back(random_f32(shape));
      xt.push_back(testing::to_tensor(context, xs.back(), layout));
      dxs.push_back(testing::to_tensor(context, before.back(), layout));
    }
    Tensor y = testing::zeros(context, concat->output_shape(), layout);
    concat->forward(xt, y);
    EXPECT_TRUE(all_close(y, ref::concat_forward(xs), 0, 0));

    const ref::Array dy = random_f32(concat->output_shape());
    const std::vector<ref::Array> g = ref::concat_backward(shapes, dy);
    dxs[2] = Tensor();
    concat->backward(testing::to_tensor(context, dy, layout), dxs,
                     {GradMode::accumulate, GradMode::overwrite, GradMode::overwrite});
    ref::Array sum = g[0];
    for (int64_t i = 0; i < sum.numel(); ++i) sum[i] += before[0][i];
    EXPECT_TRUE(all_close(dxs[0], sum, 1e-7, 0));
    EXPECT_TRUE(all_close(dxs[1], g[1], 0, 0));
  }
  // A part block, or output strides, in a blocked layout are refused.
  EXPECT_THROW(
      Concat::create(context, "cat", {.layout = Layout::nchw8c}, {{1, 8, 2, 2}, {1, 4, 2, 2}}),
      Error);
  EXPECT_THROW(
      Concat::create(context, "cat", {.output_strides = {64, 4, 2, 1}, .layout = Layout::nchw16c},
                     {{1, 16, 2, 2}}),
      Error);
}

TEST(ConcatBadInput, RejectsMiswiringAtConstruction) {
  Context context;
  EXPECT_THROW(Concat::create(context, "c", {}, {}), Error);                            // no inputs
  EXPECT_THROW(Concat::create(context, "c", {}, {{2, 3, 4, 4}, {3, 3, 4, 4}}), Error);  // N
  EXPECT_THROW(Concat::create(context, "c", {}, {{2, 3, 4, 4}, {2, 3, 4}}), Error);     // rank
  // Overlapping channels: a channel stride smaller than H * W.
  EXPECT_THROW(Concat::create(context, "c", {.output_strides = {96, 8, 4, 1}}, {{2, 6, 4, 4}}),
               Error);
  try {
    Concat::create(context, "block1.concat", {}, {{2, 3, 8, 8}, {2, 5, 8, 7}});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("block1.concat"), std::string::npos) << message;
    EXPECT_NE(message.find("(2, 3, 8, 8)"), std::string::npos) << message;
    EXPECT_NE(message.find("(2, 5, 8, 7)"), std::string::npos) << message;
  }
  try {
    Concat::create(context, "block2.concat", {}, {{2, 3, 8, 8}, {2, 0, 8, 8}});  // zero-sized
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("block2.concat"), std::string::npos) << message;
    EXPECT_NE(message.find("(2, 0, 8, 8)"), std::string::npos) << message;
  }
}

TEST(ConcatBadInput, RejectsWrongTensorsAtRunTime) {
  Context context;
  auto concat = Concat::create(context, "concat", {}, {{2, 1, 3, 3}, {2, 2, 3, 3}});
  Tensor a = testing::zeros(context, Shape{2, 1, 3, 3});
  Tensor b = testing::zeros(context, Shape{2, 2, 3, 3});
  Tensor y = testing::zeros(context, Shape{2, 3, 3, 3});
  EXPECT_THROW(concat->forward({b, a}, y), Error);  // inputs swapped
  EXPECT_THROW(concat->forward({a}, y), Error);     // one input missing
  EXPECT_THROW(concat->forward({a, b}, b), Error);  // wrong output shape
  EXPECT_THROW(concat->backward(y, {a}, {GradMode::overwrite}), Error);
  EXPECT_THROW(concat->backward(y, {a, b}, {GradMode::overwrite}), Error);  // one mode missing
}

}  // namespace
}  // namespace convnet
