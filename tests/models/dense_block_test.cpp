// The memory-efficient dense block (models/dense_block.h) against a
// double-precision reference built from the layers' references: a 1x1 stem
// convolution (so the block runs in the layout the stem gives it), then L
// dense layers of concat -> BN -> ReLU -> [1x1 conv -> BN -> ReLU ->] 3x3
// conv, in training mode (batch statistics). The reference itself is
// checked against central differences.
#include "models/dense_block.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>

#include "layers/batch_norm.h"
#include "layers/concat.h"
#include "layers/conv2d.h"
#include "layers/relu.h"
#include "tests/testing/test_util.h"

namespace convnet {
namespace {

using testing::random_array;

struct BlockShape {
  int64_t batch, stem_in, channels, size;  // x (batch, stem_in, size, size); stem -> channels
  int layers;
  int64_t growth, bn_size;  // bn_size 0: no bottleneck
};

Conv2dOptions conv_options(int64_t in, int64_t out, int64_t kernel) {
  return {.in_channels = in, .out_channels = out, .kernel = kernel, .padding = kernel / 2};
}

// The parameters of the stem and the block, by their store names.
using Params = std::map<std::string, ref::Array>;

double max_abs(const ref::Array& a) {
  double m = 0;
  for (double v : a.data) m = std::max(m, std::abs(v));
  return m;
}

std::string layer_name(int j) { return "block.denselayer" + std::to_string(j + 1); }

// BN (training) then ReLU; keeps what backward needs.
struct BnRelu {
  ref::BatchNormForward bn;
  ref::Array y;
};
BnRelu bn_relu(const ref::Array& x, const Params& p, const std::string& name) {
  const int64_t c = x.shape[1];
  BnRelu out;
  out.bn = ref::batch_norm_forward({.channels = c}, Mode::training, x, p.at(name + ".weight"),
                                   p.at(name + ".bias"), ref::Array(Shape{c}),
                                   ref::Array(Shape{c}, 1.0));
  out.y = ref::relu_forward(out.bn.y);
  return out;
}

// Forward and backward of the stem + block for output gradient dy.
struct Reference {
  ref::Array y, dx;
  Params grads;
};

Reference reference(const BlockShape& s, const ref::Array& x, const Params& p,
                    const ref::Array& dy) {
  const int64_t width = s.bn_size * s.growth;
  std::vector<ref::Array> parts{
      ref::conv2d_forward(conv_options(s.stem_in, s.channels, 1), x, p.at("stem.weight"), nullptr)};
  std::vector<ref::Array> inputs, mids;
  std::vector<BnRelu> first, second;
  for (int j = 0; j < s.layers; ++j) {
    const std::string name = layer_name(j);
    inputs.push_back(ref::concat_forward(parts));
    first.push_back(bn_relu(inputs.back(), p, name + ".norm1"));
    const int64_t in = inputs.back().shape[1];
    if (s.bn_size > 0) {
      mids.push_back(ref::conv2d_forward(conv_options(in, width, 1), first.back().y,
                                         p.at(name + ".conv1.weight"), nullptr));
      second.push_back(bn_relu(mids.back(), p, name + ".norm2"));
      parts.push_back(ref::conv2d_forward(conv_options(width, s.growth, 3), second.back().y,
                                          p.at(name + ".conv2.weight"), nullptr));
    } else {
      parts.push_back(ref::conv2d_forward(conv_options(in, s.growth, 3), first.back().y,
                                          p.at(name + ".conv1.weight"), nullptr));
    }
  }
  Reference r;
  r.y = ref::concat_forward(parts);
  std::vector<Shape> shapes;
  for (const ref::Array& part : parts) shapes.push_back(part.shape);
  std::vector<ref::Array> dparts = ref::concat_backward(shapes, dy);
  const auto bn_relu_backward = [&](const BnRelu& f, const ref::Array& in, const ref::Array& dout,
                                    const std::string& name) {
    const ref::BatchNormGrads g = ref::batch_norm_backward(
        {.channels = in.shape[1]}, Mode::training, in, p.at(name + ".weight"),
        ref::relu_backward(f.y, dout), f.bn.mean, f.bn.var);
    r.grads[name + ".weight"] = g.dweight;
    r.grads[name + ".bias"] = g.dbias;
    return g.dx;
  };
  for (int j = s.layers - 1; j >= 0; --j) {
    const std::string name = layer_name(j);
    const int64_t in = inputs[j].shape[1];
    ref::Array da;
    if (s.bn_size > 0) {
      const ref::Conv2dGrads g2 =
          ref::conv2d_backward(conv_options(width, s.growth, 3), second[j].y,
                               p.at(name + ".conv2.weight"), dparts[j + 1]);
      r.grads[name + ".conv2.weight"] = g2.dweight;
      const ref::Array dmid = bn_relu_backward(second[j], mids[j], g2.dx, name + ".norm2");
      const ref::Conv2dGrads g1 = ref::conv2d_backward(conv_options(in, width, 1), first[j].y,
                                                       p.at(name + ".conv1.weight"), dmid);
      r.grads[name + ".conv1.weight"] = g1.dweight;
      da = g1.dx;
    } else {
      const ref::Conv2dGrads g1 = ref::conv2d_backward(conv_options(in, s.growth, 3), first[j].y,
                                                       p.at(name + ".conv1.weight"), dparts[j + 1]);
      r.grads[name + ".conv1.weight"] = g1.dweight;
      da = g1.dx;
    }
    const ref::Array dz = bn_relu_backward(first[j], inputs[j], da, name + ".norm1");
    std::vector<Shape> in_shapes(shapes.begin(), shapes.begin() + j + 1);
    const std::vector<ref::Array> dins = ref::concat_backward(in_shapes, dz);
    for (int k = 0; k <= j; ++k)
      for (int64_t i = 0; i < dins[k].numel(); ++i) dparts[k][i] += dins[k][i];
  }
  const ref::Conv2dGrads stem = ref::conv2d_backward(conv_options(s.stem_in, s.channels, 1), x,
                                                     p.at("stem.weight"), dparts[0]);
  r.grads["stem.weight"] = stem.dweight;
  r.dx = stem.dx;
  return r;
}

// The block in a net: x -> 1x1 stem conv (in `layout`) -> dense block.
std::unique_ptr<Net> block_net(Context& context, ParamStore& store, const BlockShape& s,
                               Layout layout) {
  auto net = std::make_unique<Net>(context, store);
  NetBuilder b(context, *net, store);
  b.set_activation_layout(layout);
  const ValueId x = net->add_input(Shape{s.batch, s.stem_in, s.size, s.size});
  const ValueId stem = b.conv(x, "stem", conv_options(s.stem_in, s.channels, 1));
  net->set_output(add_dense_block(b, stem, "block", s.layers, s.growth, s.bn_size));
  net->set_compute_input_grad(true);
  net->plan();
  return net;
}

// Random values for every parameter (BN scales around 1), written to the store.
Params random_parameters(ParamStore& store, std::mt19937& rng) {
  Params p;
  for (const ParamEntry& e : store.entries()) {
    if (e.kind != EntryKind::parameter) continue;
    const bool bn_weight =
        e.bn_or_bias && e.name.size() > 7 && e.name.compare(e.name.size() - 7, 7, ".weight") == 0;
    p[e.name] = random_array(e.shape, rng, bn_weight ? 0.5 : -0.5, bn_weight ? 1.5 : 0.5);
    const Tensor t = store.param(store.find(e.name));
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = float(p[e.name][i]);
  }
  return p;
}

struct Case {
  const char* label;
  BlockShape shape;
  Layout layout;
};

void PrintTo(const Case& c, std::ostream* out) { *out << c.label; }

class DenseBlockTest : public ::testing::TestWithParam<Case> {};

// f32 against double: the BN normalizations divide by batch standard
// deviations of about 1, and backward through the batch statistics cancels
// sums of 50-100 terms; 1e-4 relative to each tensor's scale covers the
// f32 rounding of the convolutions and BN (the layers' own tests bound each
// at 1e-5) compounded over two dense layers.
TEST_P(DenseBlockTest, MatchesTheReference) {
  const Case& c = GetParam();
  Context context(ContextOptions{.num_threads = 2});
  ParamStore store;
  auto net = block_net(context, store, c.shape, c.layout);
  std::mt19937 rng(11);
  const Params params = random_parameters(store, rng);
  const ref::Array x = random_array(net->input().shape(), rng);
  net->input().copy_from(testing::to_tensor(context, x));
  net->forward(Mode::training);
  const ref::Array dy = random_array(net->output().shape(), rng);
  net->output_grad().copy_from(testing::to_tensor(context, dy, net->output_grad().layout()));
  store.zero_grads();
  net->backward();

  const Reference r = reference(c.shape, x, params, dy);
  EXPECT_TRUE(testing::all_close(net->output(), r.y, 0, 1e-4 * max_abs(r.y))) << "output";
  EXPECT_TRUE(testing::all_close(net->input_grad(), r.dx, 0, 1e-4 * max_abs(r.dx)))
      << "input gradient";
  for (const auto& [name, expected] : r.grads)
    EXPECT_TRUE(
        testing::all_close(store.grad(store.find(name)), expected, 0, 1e-4 * max_abs(expected)))
        << name;
}

// Bottleneck (DenseNet-BC) and plain (DenseNet-40) layers; channel counts
// that are no multiple of the block, so new channels start inside a block.
const Case kCases[] = {
    {"bottleneck_nchw", {2, 3, 5, 4, 3, 3, 2}, Layout::nchw},
    {"bottleneck_nchw8c", {2, 3, 5, 4, 3, 3, 2}, Layout::nchw8c},
    {"bottleneck_nchw16c", {2, 3, 5, 4, 3, 3, 2}, Layout::nchw16c},
    {"plain_nchw16c", {2, 3, 6, 4, 2, 5, 0}, Layout::nchw16c},
};

INSTANTIATE_TEST_SUITE_P(Layouts, DenseBlockTest, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return std::string(info.param.label); });

// The reference's input gradient equals central differences of
// L = <block(x), r> (double precision: only rounding and the O(eps^2)
// truncation, within the default bounds).
TEST(DenseBlockReference, InputGradientMatchesFiniteDifferences) {
  const BlockShape s{2, 2, 3, 3, 2, 2, 2};
  Context context(ContextOptions{.num_threads = 1});
  ParamStore store;
  auto net = block_net(context, store, s, Layout::nchw);
  std::mt19937 rng(5);
  const Params params = random_parameters(store, rng);
  ref::Array x = random_array(net->input().shape(), rng);
  const ref::Array r = random_array(net->output().shape(), rng);
  const auto loss = [&] { return testing::dot(reference(s, x, params, r).y, r); };
  EXPECT_TRUE(testing::gradient_matches(x, loss, reference(s, x, params, r).dx, 1e-5, 1e-5, 1e-7));
}

}  // namespace
}  // namespace convnet
