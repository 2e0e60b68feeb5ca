#include "layers/conv2d.h"

#include <gtest/gtest.h>

#include "tests/testing/test_util.h"

namespace convnet {
namespace {

using testing::all_close;
using testing::dot;
using testing::gradient_matches;
using testing::random_array;

struct Case {
  std::string label;
  Shape input;  // (N, C, H, W)
  Conv2dOptions options;
};

// Batch 1, odd spatial sizes, stride 2, padding, channels not a multiple of 8, groups, bias.
const Case kPlainAndNchw8cCases[] = {
    {"3x3_pad1", {2, 3, 5, 5}, {.in_channels = 3, .out_channels = 4, .kernel = 3, .padding = 1}},
    {"batch1_stride2_odd",
     {1, 5, 7, 9},
     {.in_channels = 5, .out_channels = 6, .kernel = 3, .stride = 2, .padding = 1}},
    {"1x1_stride2_bias",
     {3, 4, 6, 5},
     {.in_channels = 4, .out_channels = 3, .kernel = 1, .stride = 2, .bias = true}},
    {"7x7_stride2_pad3",
     {2, 3, 11, 11},
     {.in_channels = 3, .out_channels = 5, .kernel = 7, .stride = 2, .padding = 3}},
    {"groups2_bias",
     {2, 6, 5, 6},
     {.in_channels = 6, .out_channels = 4, .kernel = 3, .padding = 1, .groups = 2, .bias = true}},
    {"depthwise",
     {2, 3, 4, 4},
     {.in_channels = 3, .out_channels = 3, .kernel = 3, .padding = 1, .groups = 3}},
    // ResNeXt's grouped 3x3 (32 groups of 2 here; 32 x 4 in resnext50_32x4d),
    // plain and channels-last (the CPU's layout for groups that are not whole
    // blocks), and a depthwise one channels-last.
    {"groups32_stride2",
     {1, 64, 5, 5},
     {.in_channels = 64, .out_channels = 64, .kernel = 3, .stride = 2, .padding = 1, .groups = 32}},
    {"groups32_nhwc",
     {2, 64, 4, 4},
     {.in_channels = 64,
      .out_channels = 64,
      .kernel = 3,
      .padding = 1,
      .groups = 32,
      .input_layout = Layout::nhwc,
      .output_layout = Layout::nhwc}},
    {"depthwise_nhwc",
     {2, 16, 5, 5},
     {.in_channels = 16,
      .out_channels = 16,
      .kernel = 3,
      .padding = 1,
      .groups = 16,
      .input_layout = Layout::nhwc,
      .output_layout = Layout::nhwc}},
    // Blocked activations (oneDNN's direct kernels, weights reordered per call).
    {"blocked_3x3",
     {2, 8, 5, 5},
     {.in_channels = 8,
      .out_channels = 16,
      .kernel = 3,
      .padding = 1,
      .input_layout = Layout::nchw8c,
      .output_layout = Layout::nchw8c}},
    {"blocked_1x1_stride2_bias",
     {1, 16, 7, 7},
     {.in_channels = 16,
      .out_channels = 8,
      .kernel = 1,
      .stride = 2,
      .bias = true,
      .input_layout = Layout::nchw8c,
      .output_layout = Layout::nchw8c}},
    {"stem_plain_to_blocked",
     {2, 3, 9, 9},
     {.in_channels = 3,
      .out_channels = 8,
      .kernel = 7,
      .stride = 2,
      .padding = 3,
      .output_layout = Layout::nchw8c}},
    // oneDNN 2.6 has only reference backward-weights kernels for these two;
    // the layer computes them on plain copies (conv2d_onednn.cpp).
    {"gray_stem_plain_to_blocked",
     {2, 1, 6, 6},
     {.in_channels = 1,
      .out_channels = 16,
      .kernel = 3,
      .padding = 1,
      .output_layout = Layout::nchw8c}},
    // Blocked channel counts that are not a multiple of 8 pad their last
    // block (the CIFAR DenseNet-BC's 1x1 bottleneck and 3x3 growth convs).
    {"blocked_padded_1x1",
     {2, 36, 4, 5},
     {.in_channels = 36,
      .out_channels = 20,
      .kernel = 1,
      .input_layout = Layout::nchw8c,
      .output_layout = Layout::nchw8c}},
    {"blocked_padded_3x3",
     {2, 20, 5, 5},
     {.in_channels = 20,
      .out_channels = 12,
      .kernel = 3,
      .padding = 1,
      .input_layout = Layout::nchw8c,
      .output_layout = Layout::nchw8c}},
    // Groups of whole blocks (16 channels each: also in nchw16c).
    {"groups2_blocked",
     {1, 32, 4, 4},
     {.in_channels = 32,
      .out_channels = 32,
      .kernel = 3,
      .padding = 1,
      .groups = 2,
      .input_layout = Layout::nchw8c,
      .output_layout = Layout::nchw8c}},
    {"blocked_3x3_on_2x2",
     {2, 16, 2, 2},
     {.in_channels = 16,
      .out_channels = 8,
      .kernel = 3,
      .padding = 1,
      .input_layout = Layout::nchw8c,
      .output_layout = Layout::nchw8c}},
};

// Every case, and each blocked one again in nchw16c (the AVX-512 block; on an
// AVX2 CPU oneDNN runs other kernels for it, which the test checks just the
// same) and in channels-last nhwc (the layout of AMX's bf16 kernels).
std::vector<Case> all_cases() {
  std::vector<Case> cases(std::begin(kPlainAndNchw8cCases), std::end(kPlainAndNchw8cCases));
  for (const Case& c : kPlainAndNchw8cCases) {
    if (!is_blocked(c.options.output_layout)) continue;
    for (Layout other : {Layout::nchw16c, Layout::nhwc}) {
      Case wide = c;
      wide.label += other == Layout::nhwc ? "_nhwc" : "_16c";
      if (is_blocked(c.options.input_layout)) wide.options.input_layout = other;
      wide.options.output_layout = other;
      cases.push_back(wide);
    }
  }
  return cases;
}

void PrintTo(const Case& c, std::ostream* out) { *out << c.label; }

class Conv2dTest : public ::testing::TestWithParam<Case> {
 protected:
  Context context_;
  std::mt19937 rng_{1234};
};

Shape weight_shape(const Conv2dOptions& o) {
  return Shape{o.out_channels, o.in_channels / o.groups, o.kernel, o.kernel};
}

// The reference's gradients equal central differences of L = <conv(x, w) + b, r>
// (bounds in tests/testing/test_util.h; L is linear in each argument, so the
// only error is rounding).
TEST_P(Conv2dTest, ReferenceGradientsMatchFiniteDifferences) {
  const Case& c = GetParam();
  ref::Array x = random_array(c.input, rng_);
  ref::Array w = random_array(weight_shape(c.options), rng_);
  ref::Array b = random_array(Shape{c.options.out_channels}, rng_);
  const ref::Array* bias = c.options.bias ? &b : nullptr;
  const ref::Array y = ref::conv2d_forward(c.options, x, w, bias);
  const ref::Array r = random_array(y.shape, rng_);
  const auto loss = [&] { return dot(ref::conv2d_forward(c.options, x, w, bias), r); };
  const ref::Conv2dGrads g = ref::conv2d_backward(c.options, x, w, r);
  EXPECT_TRUE(gradient_matches(x, loss, g.dx));
  EXPECT_TRUE(gradient_matches(w, loss, g.dweight));
  if (c.options.bias) {
    EXPECT_TRUE(gradient_matches(b, loss, g.dbias));
  }
}

// oneDNN (f32) against the double reference fed the same f32-rounded values.
// Each output sums at most C_in*K*K = 147 products of values in [-1, 1]; f32
// accumulation error is bounded by ~n * 6e-8 * sum|terms| < 2e-5 (typically far
// less), so atol 1e-4 with rtol 1e-4 is a bound with margin, not a fudge.
TEST_P(Conv2dTest, OnednnMatchesReference) {
  const Case& c = GetParam();
  auto conv = Conv2d::create(context_, "conv_" + c.label, c.options, c.input);
  const Layout in_layout = c.options.input_layout, out_layout = c.options.output_layout;
  Tensor x = testing::to_tensor(context_, random_array(c.input, rng_), in_layout);
  Tensor w = testing::to_tensor(context_, random_array(conv->weight_shape(), rng_));
  Tensor b = c.options.bias ? testing::to_tensor(context_, random_array(conv->bias_shape(), rng_))
                            : Tensor();
  Tensor y = testing::zeros(context_, conv->output_shape(), out_layout);
  conv->forward(x, w, b, y);

  const ref::Array xr = ref::from_tensor(x), wr = ref::from_tensor(w);
  const ref::Array br = c.options.bias ? ref::from_tensor(b) : ref::Array();
  EXPECT_TRUE(all_close(y, ref::conv2d_forward(c.options, xr, wr, c.options.bias ? &br : nullptr),
                        1e-4, 1e-4));

  Tensor dy = testing::to_tensor(context_, random_array(conv->output_shape(), rng_), out_layout);
  const ref::Conv2dGrads g = ref::conv2d_backward(c.options, xr, wr, ref::from_tensor(dy));

  // Parameter gradients accumulate onto what is there; dx overwrites.
  Tensor dx = testing::to_tensor(context_, random_array(c.input, rng_), in_layout);  // garbage
  Tensor dw = testing::zeros(context_, conv->weight_shape());
  dw.fill(0.5f);
  Tensor db = c.options.bias ? testing::zeros(context_, conv->bias_shape()) : Tensor();
  conv->backward(x, w, dy, dx, GradMode::overwrite, dw, db);
  EXPECT_TRUE(all_close(dx, g.dx, 1e-4, 1e-4));
  ref::Array dw_expected = g.dweight;
  for (auto& v : dw_expected.data) v += 0.5;
  // dweight sums N*H_out*W_out products: at most 2*6*6 = 72 here, same bound.
  EXPECT_TRUE(all_close(dw, dw_expected, 1e-4, 1e-4));
  if (c.options.bias) {
    EXPECT_TRUE(all_close(db, g.dbias, 1e-4, 1e-4));
  }

  // GradMode::accumulate adds dx onto the existing values (a fanned-out input).
  Tensor dx2 = testing::zeros(context_, c.input, in_layout);
  dx2.fill(1.0f);
  conv->backward(x, w, dy, dx2, GradMode::accumulate, dw, db);
  ref::Array dx_expected = g.dx;
  for (auto& v : dx_expected.data) v += 1.0;
  EXPECT_TRUE(all_close(dx2, dx_expected, 1e-4, 1e-4));
}

INSTANTIATE_TEST_SUITE_P(Shapes, Conv2dTest, ::testing::ValuesIn(all_cases()),
                         [](const auto& info) { return info.param.label; });

TEST(Conv2dBadInput, RejectsMiswiringAtConstruction) {
  Context context;
  const Conv2dOptions o{.in_channels = 3, .out_channels = 4, .kernel = 3, .padding = 1};
  EXPECT_THROW(Conv2d::create(context, "c", o, Shape{2, 5, 8, 8}), Error);  // channel mismatch
  Conv2dOptions negative = o;
  negative.padding = -1;
  EXPECT_THROW(Conv2d::create(context, "c", negative, Shape{2, 3, 8, 8}), Error);
  EXPECT_THROW(Conv2d::create(context, "c", o, Shape{0, 3, 8, 8}), Error);  // zero-sized batch
  Conv2dOptions big = o;
  big.kernel = 9;
  big.padding = 0;
  EXPECT_THROW(Conv2d::create(context, "c", big, Shape{1, 3, 4, 4}), Error);  // kernel too big
  try {
    Conv2d::create(context, "layer1.0.conv1", o, Shape{2, 5, 8, 8});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("layer1.0.conv1"), std::string::npos) << message;
    EXPECT_NE(message.find("(2, 5, 8, 8)"), std::string::npos) << message;
  }
}

TEST(Conv2dBadInput, RejectsWrongTensorShapesAtRunTime) {
  Context context;
  auto conv = Conv2d::create(context, "conv", {.in_channels = 2, .out_channels = 2, .kernel = 1},
                             Shape{1, 2, 3, 3});
  Tensor x = testing::zeros(context, Shape{1, 2, 3, 3});
  Tensor w = testing::zeros(context, Shape{2, 2, 1, 1});
  Tensor wrong = testing::zeros(context, Shape{1, 2, 4, 3});
  EXPECT_THROW(conv->forward(x, w, Tensor(), wrong), Error);
  EXPECT_THROW(conv->forward(wrong, w, Tensor(), x), Error);
  // A channel slice of a larger buffer is strided; this layer needs contiguous input.
  Tensor wide = testing::zeros(context, Shape{1, 4, 3, 3});
  try {
    conv->forward(wide.slice(1, 1, 3), w, Tensor(), x);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(
        std::string(e.what()).find("layer conv: input of shape (1, 2, 3, 3) must be contiguous"),
        std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace convnet
