// Linear on oneDNN: inner-product forward, backward-data and backward-weights
// primitives are built once in the constructor for the layer's shape, with
// plain (NC/OI) memory so that tensors are passed without reorders. Under
// bf16 (the context's activation type) x, y and their gradients are bf16; the
// f32 weights are converted into a bf16 copy for forward and backward data,
// and the weight and bias gradients come out in f32.
#include <oneapi/dnnl/dnnl.hpp>

#include "core/onednn.h"
#include "layers/linear.h"

namespace convnet {
namespace {

using dnnl::memory;
using tag = memory::format_tag;

class LinearOnednn final : public Linear {
 public:
  LinearOnednn(Context& context, std::string name, const LinearOptions& options,
               const Shape& input_shape)
      : Linear(std::move(name), options, input_shape), context_(context), rt_(context.onednn()) {
    onednn_call("building linear " + this->name(), [&] { build(); });
  }

 private:
  void build() {
    const DType dt = context_.activation_dtype();
    x_md_ = memory::desc(input_shape().dims(), onednn_data_type(dt), tag::nc);
    y_md_ = memory::desc(output_shape().dims(), onednn_data_type(dt), tag::nc);
    w_md_ = memory::desc(weight_shape().dims(), memory::data_type::f32, tag::oi);
    w_compute_md_ = memory::desc(weight_shape().dims(), onednn_data_type(dt), tag::oi);
    b_md_ = options().bias ? memory::desc(bias_shape().dims(), memory::data_type::f32, tag::x)
                           : memory::desc();
    const auto& engine = rt_.engine;

    dnnl::inner_product_forward::desc fwd_desc(dnnl::prop_kind::forward_training, x_md_,
                                               w_compute_md_, b_md_, y_md_);
    const dnnl::inner_product_forward::primitive_desc fwd_pd(fwd_desc, engine);
    fwd_ = dnnl::inner_product_forward(fwd_pd);

    dnnl::inner_product_backward_data::desc bwd_data_desc(x_md_, w_compute_md_, y_md_);
    bwd_data_ = dnnl::inner_product_backward_data(
        dnnl::inner_product_backward_data::primitive_desc(bwd_data_desc, engine, fwd_pd));

    dnnl::inner_product_backward_weights::desc bwd_w_desc(x_md_, w_md_, b_md_, y_md_);
    bwd_weights_ = dnnl::inner_product_backward_weights(
        dnnl::inner_product_backward_weights::primitive_desc(bwd_w_desc, engine, fwd_pd));

    if (w_compute_md_ != w_md_) {
      w_compute_ = Tensor::empty(weight_shape(), context_.allocator(), dt);
      to_compute_ =
          dnnl::reorder(dnnl::reorder::primitive_desc(engine, w_md_, engine, w_compute_md_));
    }
    // oneDNN overwrites its outputs; parameter gradients accumulate through these.
    dweight_scratch_ = Tensor::empty(weight_shape(), context_.allocator());
    if (options().bias) dbias_scratch_ = Tensor::empty(bias_shape(), context_.allocator());
  }

  memory mem(const memory::desc& md, const Tensor& t) const {
    return onednn_memory(md, rt_.engine, t);
  }
  // The weights in the activation type (converted into w_compute_ under bf16).
  memory compute_weights(const Tensor& weight) {
    if (!w_compute_.defined()) return mem(w_md_, weight);
    memory target = mem(w_compute_md_, w_compute_);
    memory source = mem(w_md_, weight);
    to_compute_.execute(rt_.stream, source, target);
    return target;
  }

  void forward_impl(const Tensor& x, const Tensor& weight, const Tensor& bias,
                    const Tensor& y) override {
    onednn_call("linear " + name() + " forward", [&] {
      std::unordered_map<int, memory> args{{DNNL_ARG_SRC, mem(x_md_, x)},
                                           {DNNL_ARG_WEIGHTS, compute_weights(weight)},
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
                 : context_.scratch_tensor(Scratch::activation, input_shape(), Layout::nchw,
                                           context_.activation_dtype());
      onednn_call("linear " + name() + " backward data", [&] {
        bwd_data_.execute(rt_.stream, {{DNNL_ARG_DIFF_DST, mem(y_md_, dy)},
                                       {DNNL_ARG_WEIGHTS, compute_weights(weight)},
                                       {DNNL_ARG_DIFF_SRC, mem(x_md_, target)}});
        rt_.stream.wait();
      });
      if (!direct) add_into(dx, target);
    }
    std::unordered_map<int, memory> args{{DNNL_ARG_SRC, mem(x_md_, x)},
                                         {DNNL_ARG_DIFF_DST, mem(y_md_, dy)},
                                         {DNNL_ARG_DIFF_WEIGHTS, mem(w_md_, dweight_scratch_)}};
    if (options().bias) args.emplace(DNNL_ARG_DIFF_BIAS, mem(b_md_, dbias_scratch_));
    onednn_call("linear " + name() + " backward weights", [&] {
      bwd_weights_.execute(rt_.stream, args);
      rt_.stream.wait();
    });
    add_into(dweight, dweight_scratch_);
    if (options().bias) add_into(dbias, dbias_scratch_);
  }

  Context& context_;
  OnednnRuntime& rt_;
  memory::desc x_md_, w_md_, b_md_, y_md_;
  memory::desc w_compute_md_;  // the weights as the primitives read them
  Tensor w_compute_;           // bf16 weights under bf16 (else undefined)
  dnnl::reorder to_compute_;
  dnnl::inner_product_forward fwd_;
  dnnl::inner_product_backward_data bwd_data_;
  dnnl::inner_product_backward_weights bwd_weights_;
  Tensor dweight_scratch_;  // (out_features, in_features)
  Tensor dbias_scratch_;    // (out_features)
};

}  // namespace

std::unique_ptr<Linear> make_linear_onednn(Context& context, std::string name,
                                           const LinearOptions& options, const Shape& input_shape) {
  return std::make_unique<LinearOnednn>(context, std::move(name), options, input_shape);
}

}  // namespace convnet
