// ChannelGate on oneDNN, with primitives built once in the constructor over
// plain (contiguous) memory:
//   - eltwise logistic: g = sigmoid(s), into a small (N, C) scratch;
//   - binary mul with g viewed as (N, C, 1, 1), broadcast over H, W: y = x * g
//     in forward, and dx = dy * g in backward.
// ds is a plain OpenMP loop: one dot product of dy and x over H*W per (n, c),
// times g * (1 - g). The primitive chain for it (binary mul into an
// activation-sized scratch, a reduction over H, W, logistic backward) would
// cost an extra (N, C, H, W) buffer and two more passes over memory; the loop
// reads dy and x once. It accumulates in double because H*W is long (3136
// terms at 56x56) and the bandwidth-bound loop does not notice the cost.
// Under bf16 x, s, the gate and every gradient are bf16 (the loop converts
// as it loads and stores).
#include <oneapi/dnnl/dnnl.hpp>

#include "core/bf16.h"
#include "core/onednn.h"
#include "layers/channel_gate.h"

namespace convnet {
namespace {

using dnnl::memory;

class ChannelGateOnednn final : public ChannelGate {
 public:
  ChannelGateOnednn(Context& context, std::string name, const Shape& input_shape,
                    const Shape& gate_shape, Layout layout)
      : ChannelGate(std::move(name), input_shape, gate_shape, layout),
        context_(context),
        rt_(context.onednn()) {
    onednn_call("building channel gate " + this->name(), [&] { build(); });
  }

 private:
  void build() {
    const Shape& x = input_shape();
    const DType dt = context_.activation_dtype();
    x_md_ = onednn_desc(x, layout(), dt);
    s_md_ = onednn_desc(gate_shape(), gate_shape().contiguous_strides(), dt);
    const Shape g4{x[0], x[1], 1, 1};
    // Described in x's layout: for (N, C, 1, 1) with C a multiple of the block,
    // nChw8c / nChw16c and row-major are the same bytes, and matching layouts keep oneDNN on its
    // fast path.
    g4_md_ = onednn_desc(g4, layout(), dt);
    dnnl::eltwise_forward::desc sigmoid_desc(dnnl::prop_kind::forward_inference,
                                             dnnl::algorithm::eltwise_logistic, s_md_);
    sigmoid_ =
        dnnl::eltwise_forward(dnnl::eltwise_forward::primitive_desc(sigmoid_desc, rt_.engine));
    dnnl::binary::desc mul_desc(dnnl::algorithm::binary_mul, x_md_, g4_md_, x_md_);
    mul_ = dnnl::binary(dnnl::binary::primitive_desc(mul_desc, rt_.engine));
    gate_ = Tensor::empty(gate_shape(), context_.allocator(), dt);
    gate4_ = gate_.reshape(g4);
  }

  memory mem(const memory::desc& md, const Tensor& t) const {
    return onednn_memory(md, rt_.engine, t);
  }

  // gate_ = sigmoid(s).
  void compute_gate(const Tensor& s) {
    sigmoid_.execute(rt_.stream,
                     {{DNNL_ARG_SRC, mem(s_md_, s)}, {DNNL_ARG_DST, mem(s_md_, gate_)}});
  }

  // out = in * gate_, broadcast over H, W.
  void scale(const Tensor& in, const Tensor& out) {
    mul_.execute(rt_.stream, {{DNNL_ARG_SRC_0, mem(x_md_, in)},
                              {DNNL_ARG_SRC_1, memory(g4_md_, rt_.engine, gate4_.raw_data())},
                              {DNNL_ARG_DST, mem(x_md_, out)}});
  }

  void forward_impl(const Tensor& x, const Tensor& s, const Tensor& y) override {
    onednn_call("channel gate " + name() + " forward", [&] {
      compute_gate(s);
      scale(x, y);
      rt_.stream.wait();
    });
  }

  void backward_impl(const Tensor& x, const Tensor& s, const Tensor& dy, const Tensor& dx,
                     GradMode dx_mode, const Tensor& ds, GradMode ds_mode) override {
    onednn_call("channel gate " + name() + " backward gate", [&] {
      compute_gate(s);
      rt_.stream.wait();
    });
    // ds before dx, so that dx may overwrite dy.
    if (ds.defined()) gate_gradient(x, dy, ds, ds_mode);
    if (dx.defined()) {
      const bool direct = dx_mode == GradMode::overwrite;
      const Tensor target = direct ? dx
                                   : context_.scratch_tensor(Scratch::activation, input_shape(),
                                                             layout(), context_.activation_dtype());
      onednn_call("channel gate " + name() + " backward data", [&] {
        scale(dy, target);
        rt_.stream.wait();
      });
      if (!direct) add_into(dx, target);
    }
  }

  // ds (per mode) = sum_hw(dy * x) * g * (1 - g), with g = gate_.
  void gate_gradient(const Tensor& x, const Tensor& dy, const Tensor& ds, GradMode mode) const {
    CONVNET_CHECK(ds.is_contiguous(), "layer ", name(),
                  ": gate logits gradient must be contiguous");
    with_host_type(gate_.dtype(), [&](auto type) {
      gate_gradient_in<decltype(type)>(x, dy, ds, mode == GradMode::accumulate);
    });
  }
  // The same with T the element type of x, dy, the gate and ds.
  template <typename T>
  void gate_gradient_in(const Tensor& x, const Tensor& dy, const Tensor& ds,
                        bool accumulate) const {
    const T* xp = x.data<T>();
    const T* dyp = dy.data<T>();
    const T* gp = gate_.data<T>();
    T* dsp = ds.data<T>();
    const int64_t rows = gate_shape().numel();
    const int64_t channels = input_shape()[1];
    const int64_t hw = input_shape()[2] * input_shape()[3];
    // Element (n, c, p) of x and dy, B channels interleaved (C % B == 0), lies
    // at n * C * hw + (c / B) * B * hw + B * p + c % B; B = 1 is plain nchw,
    // and B = C channels-last nhwc.
    const int64_t step = layout() == Layout::nhwc ? channels : channel_block(layout());
#pragma omp parallel for
    for (int64_t i = 0; i < rows; ++i) {
      const int64_t n = i / channels, c = i % channels;
      const int64_t base = n * channels * hw + (c / step) * step * hw + c % step;
      const T* xr = xp + base;
      const T* dyr = dyp + base;
      double sum = 0;
#pragma omp simd reduction(+ : sum)
      for (int64_t j = 0; j < hw; ++j)
        sum += static_cast<double>(to_f32(dyr[j * step])) * to_f32(xr[j * step]);
      const double g = to_f32(gp[i]);
      const float value = static_cast<float>(sum * g * (1 - g));
      dsp[i] = from_f32<T>(accumulate ? to_f32(dsp[i]) + value : value);
    }
  }

  Context& context_;
  OnednnRuntime& rt_;
  memory::desc x_md_;   // (N, C, H, W) plain
  memory::desc s_md_;   // (N, C) plain
  memory::desc g4_md_;  // (N, C, 1, 1) plain: the gate broadcast over H, W
  dnnl::eltwise_forward sigmoid_;
  dnnl::binary mul_;
  Tensor gate_;   // (N, C): sigmoid(s) of the current call
  Tensor gate4_;  // (N, C, 1, 1): a view of gate_
};

}  // namespace

std::unique_ptr<ChannelGate> make_channel_gate_onednn(Context& context, std::string name,
                                                      const Shape& input_shape,
                                                      const Shape& gate_shape, Layout layout) {
  return std::make_unique<ChannelGateOnednn>(context, std::move(name), input_shape, gate_shape,
                                             layout);
}

}  // namespace convnet
