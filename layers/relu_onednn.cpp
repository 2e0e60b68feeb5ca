// Relu on oneDNN: eltwise forward and backward primitives built once in the
// constructor over plain (contiguous) memory of the layer's shape. The
// relu_use_dst_for_bwd algorithm makes backward read y instead of x, which is
// what allows the in-place forward.
#include <oneapi/dnnl/dnnl.hpp>

#include "core/onednn.h"
#include "layers/relu.h"

namespace convnet {
namespace {

using dnnl::memory;

class ReluOnednn final : public Relu {
 public:
  ReluOnednn(Context& context, std::string name, const Shape& shape, Layout layout)
      : Relu(std::move(name), shape, layout), context_(context), rt_(context.onednn()) {
    onednn_call("building relu " + this->name(), [&] { build(); });
  }

 private:
  void build() {
    md_ = onednn_desc(input_shape(), layout(), context_.activation_dtype());
    const auto algo = dnnl::algorithm::eltwise_relu_use_dst_for_bwd;
    dnnl::eltwise_forward::desc fwd_desc(dnnl::prop_kind::forward_training, algo, md_,
                                         /*alpha=*/0.f);
    const dnnl::eltwise_forward::primitive_desc fwd_pd(fwd_desc, rt_.engine);
    fwd_ = dnnl::eltwise_forward(fwd_pd);
    dnnl::eltwise_backward::desc bwd_desc(algo, md_, md_, /*alpha=*/0.f);
    bwd_ = dnnl::eltwise_backward(
        dnnl::eltwise_backward::primitive_desc(bwd_desc, rt_.engine, fwd_pd));
  }

  memory mem(const Tensor& t) const { return onednn_memory(md_, rt_.engine, t); }

  void forward_impl(const Tensor& x, const Tensor& y) override {
    onednn_call("relu " + name() + " forward", [&] {
      fwd_.execute(rt_.stream, {{DNNL_ARG_SRC, mem(x)}, {DNNL_ARG_DST, mem(y)}});
      rt_.stream.wait();
    });
  }

  void backward_impl(const Tensor& y, const Tensor& dy, const Tensor& dx,
                     GradMode dx_mode) override {
    const bool direct = dx_mode == GradMode::overwrite;
    const Tensor target = direct ? dx
                                 : context_.scratch_tensor(Scratch::activation, input_shape(),
                                                           layout(), context_.activation_dtype());
    onednn_call("relu " + name() + " backward", [&] {
      bwd_.execute(
          rt_.stream,
          {{DNNL_ARG_DST, mem(y)}, {DNNL_ARG_DIFF_DST, mem(dy)}, {DNNL_ARG_DIFF_SRC, mem(target)}});
      rt_.stream.wait();
    });
    if (!direct) add_into(dx, target);
  }

  Context& context_;
  OnednnRuntime& rt_;
  memory::desc md_;  // the layer's shape and layout
  dnnl::eltwise_forward fwd_;
  dnnl::eltwise_backward bwd_;
};

}  // namespace

std::unique_ptr<Relu> make_relu_onednn(Context& context, std::string name, const Shape& shape,
                                       Layout layout) {
  return std::make_unique<ReluOnednn>(context, std::move(name), shape, layout);
}

}  // namespace convnet
