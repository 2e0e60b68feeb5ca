// Every layer that accepts the blocked activation layouts (nchw8c, the AVX2
// block, and nchw16c, the AVX-512 block; both run on every CPU, oneDNN picking
// other kernels where the CPU lacks the ISA) computes the same outputs and
// gradients as with plain NCHW (which the per-layer tests check against the
// double-precision reference), also with channel counts that are not a
// multiple of the block (the last block padded with zero lanes). oneDNN runs different
// kernels for the two layouts, so sums may be ordered differently: 1e-5
// relative (f32 rounding of short sums) is the bound; data movement (ReLU,
// pooling, add, gate's dx) is in fact exact.
#include <gtest/gtest.h>

#include "layers/add.h"
#include "layers/avg_pool2d.h"
#include "layers/batch_norm.h"
#include "layers/channel_gate.h"
#include "layers/global_avg_pool.h"
#include "layers/max_pool2d.h"
#include "layers/relu.h"
#include "tests/testing/test_util.h"

namespace convnet {
namespace {

using testing::all_close;
using testing::random_array;

const Shape kShapes[] = {{2, 16, 5, 7}, {1, 8, 3, 3}, {3, 24, 4, 4},
                         {2, 12, 5, 7}, {1, 3, 4, 4}, {2, 40, 3, 3}};
// The blocks, and channels-last nhwc (the CPU's layout for AMX's bf16 kernels).
const Layout kBlockedLayouts[] = {Layout::nchw8c, Layout::nchw16c, Layout::nhwc};

class BlockedLayout : public ::testing::TestWithParam<std::tuple<Layout, Shape>> {
 protected:
  Layout blocked() const { return std::get<0>(GetParam()); }
  const Shape& shape() const { return std::get<1>(GetParam()); }
  Tensor make(const ref::Array& a, Layout layout) {
    return testing::to_tensor(context_, a, layout);
  }
  Tensor zeros(const Shape& s, Layout layout) { return testing::zeros(context_, s, layout); }
  Context context_;
  std::mt19937 rng_{99};
};

TEST_P(BlockedLayout, BatchNormTrainingAndInference) {
  const Shape shape = this->shape();
  const Shape c{shape[1]};
  const ref::Array x = random_array(shape, rng_), dy = random_array(shape, rng_);
  const ref::Array w = random_array(c, rng_), b = random_array(c, rng_);
  std::vector<ref::Array> results;
  for (Layout layout : {Layout::nchw, blocked()}) {
    auto bn = BatchNorm2d::create(context_, "bn", {.channels = shape[1], .layout = layout}, shape);
    Tensor mean = zeros(c, Layout::nchw), var = zeros(c, Layout::nchw);
    var.fill(1.0f);
    Tensor y = zeros(shape, layout), dx = zeros(shape, layout);
    Tensor dw = zeros(c, Layout::nchw), db = zeros(c, Layout::nchw);
    Tensor xt = make(x, layout), wt = make(w, Layout::nchw), bt = make(b, Layout::nchw);
    bn->forward(Mode::training, xt, wt, bt, mean, var, y);
    bn->backward(xt, wt, make(dy, layout), dx, GradMode::overwrite, dw, db);
    for (const Tensor& t : {y, dx, dw, db, mean, var}) results.push_back(ref::from_tensor(t));
    Tensor y_inf = zeros(shape, layout);
    bn->forward(Mode::inference, xt, wt, bt, mean, var, y_inf);
    results.push_back(ref::from_tensor(y_inf));
  }
  const std::size_t half = results.size() / 2;
  for (std::size_t i = 0; i < half; ++i)
    EXPECT_TRUE(all_close(results[half + i], results[i], 1e-5, 1e-6)) << "result " << i;
}

TEST_P(BlockedLayout, ReluMaxPoolGlobalPoolAddGate) {
  const Shape shape = this->shape();
  const Shape nc{shape[0], shape[1]};
  const ref::Array a = random_array(shape, rng_), b = random_array(shape, rng_);
  const ref::Array s = random_array(nc, rng_), d = random_array(shape, rng_);
  const MaxPool2dOptions pool{.kernel = 3, .stride = 2, .padding = 1};
  const ref::Array pdy = random_array(pool2d_output_shape("pool", shape, 3, 2, 1), rng_);
  const ref::Array ady = random_array(pool2d_output_shape("avg", shape, 2, 2, 0), rng_);
  std::vector<ref::Array> results;
  for (Layout layout : {Layout::nchw, blocked()}) {
    auto relu = Relu::create(context_, "relu", shape, layout);
    Tensor y = zeros(shape, layout), dx = zeros(shape, layout);
    relu->forward(make(a, layout), y);
    relu->backward(y, make(d, layout), dx, GradMode::overwrite);
    results.push_back(ref::from_tensor(y));
    results.push_back(ref::from_tensor(dx));

    MaxPool2dOptions o = pool;
    o.layout = layout;
    auto max_pool = MaxPool2d::create(context_, "pool", o, shape);
    Tensor py = zeros(max_pool->output_shape(), layout), pdx = zeros(shape, layout);
    max_pool->forward(Mode::training, make(a, layout), py);
    max_pool->backward(make(pdy, layout), pdx, GradMode::overwrite);
    results.push_back(ref::from_tensor(py));
    results.push_back(ref::from_tensor(pdx));

    auto gap = GlobalAvgPool::create(context_, "gap", shape, layout);
    Tensor gy = zeros(nc, Layout::nchw), gdx = zeros(shape, layout);
    gap->forward(make(a, layout), gy);
    gap->backward(make(s, Layout::nchw), gdx, GradMode::overwrite);
    results.push_back(ref::from_tensor(gy));
    results.push_back(ref::from_tensor(gdx));

    auto add = Add::create(context_, "add", shape, shape, layout);
    Tensor ay = zeros(shape, layout), da = zeros(shape, layout), db = zeros(shape, layout);
    da.fill(1.0f);
    add->forward(make(a, layout), make(b, layout), ay);
    add->backward(make(d, layout), da, GradMode::accumulate, db, GradMode::overwrite);
    results.push_back(ref::from_tensor(ay));
    results.push_back(ref::from_tensor(da));
    results.push_back(ref::from_tensor(db));

    AvgPool2dOptions ao{.kernel = 2, .stride = 2};
    ao.layout = layout;
    auto avg_pool = AvgPool2d::create(context_, "avg", ao, shape);
    Tensor ay2 = zeros(avg_pool->output_shape(), layout), adx = zeros(shape, layout);
    avg_pool->forward(make(a, layout), ay2);
    avg_pool->backward(make(ady, layout), adx, GradMode::overwrite);
    results.push_back(ref::from_tensor(ay2));
    results.push_back(ref::from_tensor(adx));

    if (shape[1] % channel_block(blocked()) != 0) {  // the blocked gate needs whole blocks
      if (layout == blocked()) {
        EXPECT_THROW(ChannelGate::create(context_, "gate", shape, nc, layout), Error);
      }
      continue;
    }
    auto gate = ChannelGate::create(context_, "gate", shape, nc, layout);
    Tensor gate_y = zeros(shape, layout), gate_dx = zeros(shape, layout);
    Tensor gate_ds = zeros(nc, Layout::nchw);
    gate->forward(make(a, layout), make(s, Layout::nchw), gate_y);
    gate->backward(make(a, layout), make(s, Layout::nchw), make(d, layout), gate_dx,
                   GradMode::overwrite, gate_ds, GradMode::overwrite);
    results.push_back(ref::from_tensor(gate_y));
    results.push_back(ref::from_tensor(gate_dx));
    results.push_back(ref::from_tensor(gate_ds));
  }
  const std::size_t half = results.size() / 2;
  for (std::size_t i = 0; i < half; ++i)
    EXPECT_TRUE(all_close(results[half + i], results[i], 1e-5, 1e-6)) << "result " << i;
}

// BatchNorm with a fused ReLU equals BatchNorm then ReLU, forward and
// backward, in both modes and layouts (same kernels' arithmetic, so 1e-5).
TEST_P(BlockedLayout, FusedBatchNormReluEqualsSeparate) {
  const Shape shape = this->shape();
  const Shape c{shape[1]};
  const ref::Array x = random_array(shape, rng_), dy = random_array(shape, rng_);
  const ref::Array w = random_array(c, rng_), b = random_array(c, rng_);
  for (Layout layout : {Layout::nchw, blocked()})
    for (Mode mode : {Mode::training, Mode::inference}) {
      std::vector<ref::Array> results;
      for (bool fused : {false, true}) {
        auto bn = BatchNorm2d::create(
            context_, "bn", {.channels = shape[1], .layout = layout, .fuse_relu = fused}, shape);
        auto relu = Relu::create(context_, "relu", shape, layout);
        Tensor mean = zeros(c, Layout::nchw), var = zeros(c, Layout::nchw);
        var.fill(1.5f);
        Tensor y = zeros(shape, layout), dx = zeros(shape, layout), dr = zeros(shape, layout);
        Tensor dw = zeros(c, Layout::nchw), db = zeros(c, Layout::nchw);
        Tensor xt = make(x, layout), wt = make(w, Layout::nchw), bt = make(b, Layout::nchw);
        Tensor dyt = make(dy, layout);
        bn->forward(mode, xt, wt, bt, mean, var, y);
        if (!fused) relu->forward(y, y);
        if (!fused) relu->backward(y, dyt, dr, GradMode::overwrite);
        bn->backward(xt, wt, fused ? dyt : dr, dx, GradMode::overwrite, dw, db);
        for (const Tensor& t : {y, dx, dw, db, mean, var}) results.push_back(ref::from_tensor(t));
        if (fused) {  // recompute reproduces the fused output
          Tensor again = zeros(shape, layout);
          bn->recompute(xt, wt, bt, again);
          EXPECT_TRUE(all_close(ref::from_tensor(again), results[6], 1e-6, 1e-6));
        }
      }
      for (std::size_t i = 0; i < 6; ++i)
        EXPECT_TRUE(all_close(results[6 + i], results[i], 1e-5, 1e-6))
            << "result " << i << (mode == Mode::training ? " training " : " inference ")
            << to_string(layout);
    }
}

// BatchNorm with a fused ReLU against the double-precision reference
// directly: y = relu(bn(x)), dx = bn_backward(dy * (y > 0)), in both modes
// and layouts. f32 BN against double: 1e-5 relative plus 1e-5 absolute
// (the batch statistics' rounding; the BN tests' bounds).
TEST_P(BlockedLayout, FusedBatchNormReluMatchesReference) {
  const Shape shape = this->shape();
  const Shape c{shape[1]};
  const ref::Array x = random_array(shape, rng_), dy = random_array(shape, rng_);
  const ref::Array w = random_array(c, rng_, 0.5, 1.5), b = random_array(c, rng_);
  const ref::Array running_mean(c), running_var(c, 1.5);
  for (Layout layout : {Layout::nchw, blocked()})
    for (Mode mode : {Mode::training, Mode::inference}) {
      const BatchNormOptions o{.channels = shape[1], .layout = layout, .fuse_relu = true};
      auto bn = BatchNorm2d::create(context_, "bn", o, shape);
      Tensor mean = make(running_mean, Layout::nchw), var = make(running_var, Layout::nchw);
      Tensor y = zeros(shape, layout), dx = zeros(shape, layout);
      Tensor dw = zeros(c, Layout::nchw), db = zeros(c, Layout::nchw);
      const Tensor xt = make(x, layout);
      bn->forward(mode, xt, make(w, Layout::nchw), make(b, Layout::nchw), mean, var, y);
      bn->backward(xt, make(w, Layout::nchw), make(dy, layout), dx, GradMode::overwrite, dw, db);

      const ref::BatchNormForward f =
          ref::batch_norm_forward({.channels = shape[1]}, mode, x, w, b, running_mean, running_var);
      const ref::Array yr = ref::relu_forward(f.y);
      const ref::BatchNormGrads g = ref::batch_norm_backward(
          {.channels = shape[1]}, mode, x, w, ref::relu_backward(yr, dy), f.mean, f.var);
      const std::string where =
          to_string(layout) + (mode == Mode::training ? " training" : " inference");
      EXPECT_TRUE(all_close(y, yr, 1e-5, 1e-5)) << "output " << where;
      EXPECT_TRUE(all_close(dx, g.dx, 1e-5, 1e-5)) << "input gradient " << where;
      EXPECT_TRUE(all_close(dw, g.dweight, 1e-5, 1e-5)) << "weight gradient " << where;
      EXPECT_TRUE(all_close(db, g.dbias, 1e-5, 1e-5)) << "bias gradient " << where;
    }
}

// The padding lanes of a blocked tensor whose channel count is not a multiple of the block.
std::vector<float*> padding_lanes(const Tensor& t) {
  const int64_t c = t.shape()[1], hw = t.shape()[2] * t.shape()[3], b = channel_block(t.layout());
  std::vector<float*> lanes;
  if (c % b == 0) return lanes;
  for (int64_t n = 0; n < t.shape()[0]; ++n)
    for (int64_t p = 0; p < hw; ++p)
      for (int64_t lane = c % b; lane < b; ++lane)
        lanes.push_back(t.data<float>() + n * t.strides()[0] + (c / b) * hw * b + p * b + lane);
  return lanes;
}

// write_channels moves channel ranges between blocked tensors as slices and
// write_gradient do between plain ones: ranges that start inside a block,
// that end inside one, overwrite and accumulate, in both block sizes and
// channels-last.
// Padding lanes stay zero.
TEST(BlockedLayoutChannels, WriteChannelsEqualsPlainSlices) {
  Context context;
  std::mt19937 rng(5);
  const Shape big{2, 30, 3, 5}, small{2, 13, 3, 5};
  struct Move {
    int64_t dst_begin, src_begin, count;
    bool into_small;  // big -> small, else small -> big
    GradMode mode;
  };
  const Move moves[] = {
      {0, 0, 13, true, GradMode::overwrite},     // a DenseNet's concatenated input
      {17, 0, 13, false, GradMode::overwrite},   // a layer's new features, unaligned
      {0, 17, 13, true, GradMode::overwrite},    // their gradient, back
      {0, 0, 13, false, GradMode::accumulate},   // the input gradient, added
      {8, 8, 5, true, GradMode::accumulate},     // aligned start, partial block
      {3, 1, 9, false, GradMode::overwrite},     // both unaligned, different lanes
      {3, 1, 9, false, GradMode::accumulate},    // the same, added
      {17, 0, 13, false, GradMode::accumulate},  // unaligned, added, up to the last channel
      {16, 0, 13, false, GradMode::overwrite},   // aligned for both blocks, to the last channel
  };
  for (const Move& m : moves) {
    const ref::Array a = random_array(big, rng), b = random_array(small, rng);
    std::vector<ref::Array> results;
    for (Layout layout : {Layout::nchw, Layout::nchw8c, Layout::nchw16c, Layout::nhwc}) {
      Tensor tb = testing::to_tensor(context, a, layout),
             ts = testing::to_tensor(context, b, layout);
      const Tensor& dst = m.into_small ? ts : tb;
      const bool to_end = m.dst_begin + m.count == dst.shape()[1];
      if (is_blocked(layout) && to_end)  // stale lanes: the write must zero them
        for (float* lane : padding_lanes(dst)) *lane = 9.0f;
      write_channels(dst, m.dst_begin, m.into_small ? tb : ts, m.src_begin, m.count, m.mode);
      results.push_back(ref::from_tensor(dst));
      if (is_blocked(layout)) {  // padding lanes of both are still zero
        for (const Tensor& t : {tb, ts}) {
          for (const float* lane : padding_lanes(t)) EXPECT_EQ(*lane, 0.0f);
        }
      }
    }
    for (std::size_t other : {1, 2, 3})
      EXPECT_TRUE(all_close(results[other], results[0], 0, 0))
          << m.count << " channels " << m.src_begin << " -> " << m.dst_begin << " layout " << other
          << " (nchw8c, nchw16c, nhwc)";
  }
  Tensor plain = testing::zeros(context, small),
         blocked = testing::zeros(context, small, Layout::nchw8c);
  EXPECT_THROW(write_channels(blocked, 0, plain, 0, 4, GradMode::overwrite), Error);
  EXPECT_THROW(write_channels(blocked, 10, blocked, 0, 4, GradMode::overwrite), Error);
  Tensor other_block = testing::zeros(context, small, Layout::nchw16c);
  EXPECT_THROW(write_channels(other_block, 0, blocked, 0, 4, GradMode::overwrite), Error);
}

TEST(BlockedLayoutBadInput, NeedsRankFourAndMatchingLayouts) {
  Context context;
  EXPECT_THROW(Relu::create(context, "relu", Shape{2, 12}, Layout::nchw8c), Error);
  EXPECT_THROW(
      BatchNorm2d::create(context, "bn", {.channels = 3, .layout = Layout::nchw8c}, Shape{2, 3, 4}),
      Error);
  auto relu = Relu::create(context, "relu", Shape{1, 8, 2, 2}, Layout::nchw8c);
  Tensor plain = testing::zeros(context, Shape{1, 8, 2, 2});
  EXPECT_TRUE(testing::throws_error_with([&] { relu->forward(plain, plain); },
                                         "has layout nchw, expected nchw8c"));
  Tensor other_block = testing::zeros(context, Shape{1, 8, 2, 2}, Layout::nchw16c);
  EXPECT_TRUE(testing::throws_error_with([&] { relu->forward(other_block, other_block); },
                                         "has layout nchw16c, expected nchw8c"));
}

INSTANTIATE_TEST_SUITE_P(Shapes, BlockedLayout,
                         ::testing::Combine(::testing::ValuesIn(kBlockedLayouts),
                                            ::testing::ValuesIn(kShapes)),
                         [](const auto& info) {
                           const Shape& s = std::get<1>(info.param);
                           std::string name = to_string(std::get<0>(info.param));
                           for (int i = 0; i < s.rank(); ++i) name += "_" + std::to_string(s[i]);
                           return name;
                         });

}  // namespace
}  // namespace convnet
