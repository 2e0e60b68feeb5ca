// AvgPool2d on oneDNN: forward and backward primitives are built once in the
// constructor, with plain NCHW memory. Average pooling needs no workspace.
#include <oneapi/dnnl/dnnl.hpp>

#include "core/onednn.h"
#include "layers/avg_pool2d.h"

namespace convnet {
namespace {

using dnnl::memory;
using tag = memory::format_tag;

class AvgPool2dOnednn final : public AvgPool2d {
 public:
  AvgPool2dOnednn(Context& context, std::string name, const AvgPool2dOptions& options,
                  const Shape& input_shape)
      : AvgPool2d(std::move(name), options, input_shape), context_(context), rt_(context.onednn()) {
    onednn_call("building avg_pool2d " + this->name(), [&] { build(); });
  }

 private:
  void build() {
    const AvgPool2dOptions& o = options();
    const memory::dims strides{o.stride, o.stride}, kernel{o.kernel, o.kernel},
        padding{o.padding, o.padding};
    x_md_ = onednn_desc(input_shape(), o.layout, context_.activation_dtype());
    y_md_ = onednn_desc(output_shape(), o.layout, context_.activation_dtype());
    // include_padding divides by K * K; exclude_padding by the in-input count.
    // With floor output sizes every window lies inside the padded input, so
    // K * K is also PyTorch's count_include_pad divisor.
    const auto algo = o.count_include_pad ? dnnl::algorithm::pooling_avg_include_padding
                                          : dnnl::algorithm::pooling_avg_exclude_padding;
    const auto& engine = rt_.engine;

    dnnl::pooling_forward::desc fwd_desc(dnnl::prop_kind::forward_training, algo, x_md_, y_md_,
                                         strides, kernel, padding, padding);
    const dnnl::pooling_forward::primitive_desc fwd_pd(fwd_desc, engine);
    fwd_ = dnnl::pooling_forward(fwd_pd);

    dnnl::pooling_backward::desc bwd_desc(algo, x_md_, y_md_, strides, kernel, padding, padding);
    bwd_ = dnnl::pooling_backward(dnnl::pooling_backward::primitive_desc(bwd_desc, engine, fwd_pd));
  }

  memory mem(const memory::desc& md, const Tensor& t) const {
    return onednn_memory(md, rt_.engine, t);
  }

  void forward_impl(const Tensor& x, const Tensor& y) override {
    onednn_call("avg_pool2d " + name() + " forward", [&] {
      fwd_.execute(rt_.stream, {{DNNL_ARG_SRC, mem(x_md_, x)}, {DNNL_ARG_DST, mem(y_md_, y)}});
      rt_.stream.wait();
    });
  }

  void backward_impl(const Tensor& dy, const Tensor& dx, GradMode dx_mode) override {
    const bool direct = dx_mode == GradMode::overwrite;
    const Tensor target =
        direct ? dx
               : context_.scratch_tensor(Scratch::activation, input_shape(), options().layout,
                                         context_.activation_dtype());
    onednn_call("avg_pool2d " + name() + " backward", [&] {
      bwd_.execute(rt_.stream,
                   {{DNNL_ARG_DIFF_DST, mem(y_md_, dy)}, {DNNL_ARG_DIFF_SRC, mem(x_md_, target)}});
      rt_.stream.wait();
    });
    if (!direct) add_into(dx, target);
  }

  Context& context_;
  OnednnRuntime& rt_;
  memory::desc x_md_, y_md_;
  dnnl::pooling_forward fwd_;
  dnnl::pooling_backward bwd_;
};

}  // namespace

std::unique_ptr<AvgPool2d> make_avg_pool2d_onednn(Context& context, std::string name,
                                                  const AvgPool2dOptions& options,
                                                  const Shape& input_shape) {
  return std::make_unique<AvgPool2dOnednn>(context, std::move(name), options, input_shape);
}

}  // namespace convnet
