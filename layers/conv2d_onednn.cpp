// Conv2d on oneDNN: forward, backward-data and backward-weights primitives are
// built once in the constructor for the layer's shape and layouts.
//
// Activations are passed in the layouts the options name, without reorders.
// With plain NCHW activations the weights are plain OIHW too (oneDNN then
// runs its im2col+GEMM kernels). With blocked (nchw8c, nchw16c) activations oneDNN
// picks its preferred weight layout for each primitive (its direct AVX2/AVX-512
// kernels); the plain weights of the parameter buffer are reordered into it
// on every call, and the weight gradient is reordered back: weights are small
// next to activations, so this costs little and keeps one plain parameter
// buffer for the optimizer, the allreduce and the weights file.
//
// Under bf16 (the context's activation type) activations and their gradients
// are bf16; the f32 weights are converted by the same reorder into the bf16
// layout the primitive wants, and the weight and bias gradients come out in
// f32 (oneDNN accumulates in f32).
#include <oneapi/dnnl/dnnl.hpp>
#include <string>

#include "core/onednn.h"
#include "layers/conv2d.h"

namespace convnet {
namespace {

using dnnl::memory;
using tag = memory::format_tag;

// A primitive's view of the weights: either the plain tensor itself, or the
// context's scratch memory in the primitive's preferred layout, with reorders
// from plain (weights) and back to plain, accumulating (weight gradients).
struct WeightsLayout {
  memory::desc desc;  // what the primitive reads or writes
  bool reordered = false;
  dnnl::reorder from_plain, accumulate_to_plain;

  void init(const memory::desc& plain, const memory::desc& preferred, const dnnl::engine& engine) {
    desc = preferred;
    reordered = preferred != plain;
    if (!reordered) return;
    from_plain = dnnl::reorder(dnnl::reorder::primitive_desc(engine, plain, engine, preferred));
    dnnl::post_ops sum;
    sum.append_sum(1.0f);  // dst = dst + reorder(src)
    dnnl::primitive_attr attr;
    attr.set_post_ops(sum);
    accumulate_to_plain =
        dnnl::reorder(dnnl::reorder::primitive_desc(engine, preferred, engine, plain, attr));
  }
  memory scratch_memory(Context& context, Scratch slot, const dnnl::engine& engine) const {
    return memory(desc, engine, context.scratch(slot, desc.get_size()));
  }
};

class Conv2dOnednn final : public Conv2d {
 public:
  Conv2dOnednn(Context& context, std::string name, const Conv2dOptions& options,
               const Shape& input_shape)
      : Conv2d(std::move(name), options, input_shape), context_(context), rt_(context.onednn()) {
    onednn_call("building conv2d " + this->name(), [&] { build(); });
  }

 private:
  void build() {
    const Conv2dOptions& o = options();
    const memory::dims strides{o.stride, o.stride}, padding{o.padding, o.padding};
    const DType dt = context_.activation_dtype();
    x_md_ = onednn_desc(input_shape(), o.input_layout, dt);
    y_md_ = onednn_desc(output_shape(), o.output_layout, dt);
    const memory::dims w_dims = o.groups == 1
                                    ? weight_shape().dims()
                                    : memory::dims{o.groups, o.out_channels / o.groups,
                                                   o.in_channels / o.groups, o.kernel, o.kernel};
    const tag plain = o.groups == 1 ? tag::oihw : tag::goihw;
    w_plain_md_ = memory::desc(w_dims, memory::data_type::f32, plain);
    // Blocked or channels-last activations: the weight layout oneDNN
    // prefers; plain: OIHW. Weights in the activation type, their gradient in f32.
    const bool blocked = o.output_layout != Layout::nchw;
    const auto weights_md = [&](memory::data_type type) {
      return memory::desc(w_dims, type, blocked ? tag::any : plain);
    };
    const memory::desc w_md = weights_md(onednn_data_type(dt));
    const memory::desc dw_md = weights_md(memory::data_type::f32);
    b_md_ =
        o.bias ? memory::desc({o.out_channels}, memory::data_type::f32, tag::x) : memory::desc();
    const auto algo = dnnl::algorithm::convolution_direct;
    const auto& engine = rt_.engine;

    dnnl::convolution_forward::desc fwd_desc(dnnl::prop_kind::forward_training, algo, x_md_, w_md,
                                             b_md_, y_md_, strides, padding, padding);
    const dnnl::convolution_forward::primitive_desc fwd_pd(fwd_desc, engine);
    fwd_ = dnnl::convolution_forward(fwd_pd);
    fwd_weights_.init(w_plain_md_, fwd_pd.weights_desc(), engine);

    dnnl::convolution_backward_data::desc bwd_data_desc(algo, x_md_, w_md, y_md_, strides, padding,
                                                        padding);
    const dnnl::convolution_backward_data::primitive_desc bwd_data_pd(bwd_data_desc, engine,
                                                                      fwd_pd);
    bwd_data_ = dnnl::convolution_backward_data(bwd_data_pd);
    bwd_data_weights_.init(w_plain_md_, bwd_data_pd.weights_desc(), engine);

    dnnl::convolution_backward_weights::desc bwd_w_desc(algo, x_md_, dw_md, b_md_, y_md_, strides,
                                                        padding, padding);
    dnnl::convolution_backward_weights::primitive_desc bwd_w_pd(bwd_w_desc, engine, fwd_pd);
    if (blocked && std::string(bwd_w_pd.impl_info_str()).rfind("ref", 0) == 0) {
      // oneDNN 2.6 has only its reference kernel for some layouts and shapes
      // (a 1-channel plain input with a blocked gradient: 200 ms a call where
      // the rest of resnet20 takes 20 ms; 3x3 convolutions over 2x2 maps).
      // Its GEMM kernel handles plain input and gradient, so copy them to
      // plain first: a reorder costs far less than the reference kernel.
      x_plain_md_ = onednn_desc(input_shape(), Layout::nchw, dt);
      dy_plain_md_ = onednn_desc(output_shape(), Layout::nchw, dt);
      dnnl::convolution_backward_weights::desc plain_desc(algo, x_plain_md_, dw_md, b_md_,
                                                          dy_plain_md_, strides, padding, padding);
      bwd_w_pd = dnnl::convolution_backward_weights::primitive_desc(plain_desc, engine, fwd_pd);
      if (x_plain_md_ != x_md_)
        x_to_plain_ =
            dnnl::reorder(dnnl::reorder::primitive_desc(engine, x_md_, engine, x_plain_md_));
      dy_to_plain_ =
          dnnl::reorder(dnnl::reorder::primitive_desc(engine, y_md_, engine, dy_plain_md_));
      plain_backward_weights_ = true;
    }
    bwd_weights_ = dnnl::convolution_backward_weights(bwd_w_pd);
    diff_weights_.init(w_plain_md_, bwd_w_pd.diff_weights_desc(), engine);

    // oneDNN overwrites its outputs; the bias gradient accumulates through this.
    if (o.bias) dbias_scratch_ = Tensor::empty(bias_shape(), context_.allocator());
  }

  memory mem(const memory::desc& md, const Tensor& t) const {
    return onednn_memory(md, rt_.engine, t);
  }

  // The weights as `view` wants them, reordering from the plain tensor if needed.
  memory weights_for(const WeightsLayout& view, const Tensor& weight) {
    if (!view.reordered) return mem(w_plain_md_, weight);
    memory source = mem(w_plain_md_, weight);
    memory target = view.scratch_memory(context_, Scratch::weights, rt_.engine);
    view.from_plain.execute(rt_.stream, source, target);
    return target;
  }

  void forward_impl(const Tensor& x, const Tensor& weight, const Tensor& bias,
                    const Tensor& y) override {
    onednn_call("conv2d " + name() + " forward", [&] {
      std::unordered_map<int, memory> args{{DNNL_ARG_SRC, mem(x_md_, x)},
                                           {DNNL_ARG_WEIGHTS, weights_for(fwd_weights_, weight)},
                                           {DNNL_ARG_DST, mem(y_md_, y)}};
      if (options().bias) args.emplace(DNNL_ARG_BIAS, mem(b_md_, bias));
      fwd_.execute(rt_.stream, args);
      rt_.stream.wait();
    });
  }

  void backward_impl(const Tensor& x, const Tensor& weight, const Tensor& dy, const Tensor& dx,
                     GradMode dx_mode, const Tensor& dweight, const Tensor& dbias) override {
    if (dx.defined()) {
      const bool direct = dx_mode == GradMode::overwrite;
      const Tensor target =
          direct ? dx
                 : context_.scratch_tensor(Scratch::activation, input_shape(),
                                           options().input_layout, context_.activation_dtype());
      onednn_call("conv2d " + name() + " backward data", [&] {
        bwd_data_.execute(rt_.stream, {{DNNL_ARG_DIFF_DST, mem(y_md_, dy)},
                                       {DNNL_ARG_WEIGHTS, weights_for(bwd_data_weights_, weight)},
                                       {DNNL_ARG_DIFF_SRC, mem(x_md_, target)}});
        rt_.stream.wait();
      });
      if (!direct) add_into(dx, target);
    }
    // The weight gradient goes to scratch (in the primitive's layout), then is
    // added into dweight: by a reorder with a sum post-op, or add_into when plain.
    const Tensor plain_scratch =
        diff_weights_.reordered ? Tensor()
                                : context_.scratch_tensor(Scratch::weight_gradient, weight_shape());
    onednn_call("conv2d " + name() + " backward weights", [&] {
      memory dw = diff_weights_.reordered
                      ? diff_weights_.scratch_memory(context_, Scratch::weight_gradient, rt_.engine)
                      : mem(w_plain_md_, plain_scratch);
      memory src = mem(x_md_, x), diff_dst = mem(y_md_, dy);
      if (plain_backward_weights_) {
        memory plain_dy(dy_plain_md_, rt_.engine,
                        context_.scratch(Scratch::activation, dy_plain_md_.get_size()));
        dy_to_plain_.execute(rt_.stream, diff_dst, plain_dy);
        diff_dst = plain_dy;
        if (x_plain_md_ != x_md_) {
          memory plain_x(x_plain_md_, rt_.engine,
                         context_.scratch(Scratch::layout_copy, x_plain_md_.get_size()));
          x_to_plain_.execute(rt_.stream, src, plain_x);
          src = plain_x;
        }
      }
      std::unordered_map<int, memory> args{
          {DNNL_ARG_SRC, src}, {DNNL_ARG_DIFF_DST, diff_dst}, {DNNL_ARG_DIFF_WEIGHTS, dw}};
      if (options().bias) args.emplace(DNNL_ARG_DIFF_BIAS, mem(b_md_, dbias_scratch_));
      bwd_weights_.execute(rt_.stream, args);
      if (diff_weights_.reordered) {
        memory plain_dw = mem(w_plain_md_, dweight);
        diff_weights_.accumulate_to_plain.execute(rt_.stream, dw, plain_dw);
      }
      rt_.stream.wait();
    });
    if (!diff_weights_.reordered) add_into(dweight, plain_scratch);
    if (options().bias) add_into(dbias, dbias_scratch_);
  }

  Context& context_;
  OnednnRuntime& rt_;
  memory::desc x_md_, w_plain_md_, b_md_, y_md_;
  dnnl::convolution_forward fwd_;
  dnnl::convolution_backward_data bwd_data_;
  dnnl::convolution_backward_weights bwd_weights_;
  WeightsLayout fwd_weights_, bwd_data_weights_, diff_weights_;
  // Backward weights on plain copies of input and gradient (see build()).
  bool plain_backward_weights_ = false;
  memory::desc x_plain_md_, dy_plain_md_;
  dnnl::reorder x_to_plain_, dy_to_plain_;
  Tensor dbias_scratch_;  // (C_out)
};

}  // namespace

std::unique_ptr<Conv2d> make_conv2d_onednn(Context& context, std::string name,
                                           const Conv2dOptions& options, const Shape& input_shape) {
  return std::make_unique<Conv2dOnednn>(context, std::move(name), options, input_shape);
}

}  // namespace convnet
