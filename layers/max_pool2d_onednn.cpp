// MaxPool2d on oneDNN: training and inference forward and the backward
// primitive are built once in the constructor, with plain NCHW memory. The
// training forward writes the argmax workspace that backward reads.
#include <oneapi/dnnl/dnnl.hpp>

#include "core/onednn.h"
#include "layers/max_pool2d.h"

namespace convnet {
namespace {

using dnnl::memory;
using tag = memory::format_tag;

class MaxPool2dOnednn final : public MaxPool2d {
 public:
  MaxPool2dOnednn(Context& context, std::string name, const MaxPool2dOptions& options,
                  const Shape& input_shape)
      : MaxPool2d(std::move(name), options, input_shape), context_(context), rt_(context.onednn()) {
    onednn_call("building max_pool2d " + this->name(), [&] { build(); });
  }

 private:
  void build() {
    const MaxPool2dOptions& o = options();
    // Ceil mode: the right and bottom padding reach the last window's end.
    const Shape& in = input_shape();
    const Shape& out = output_shape();
    const memory::dims strides{o.stride, o.stride}, kernel{o.kernel, o.kernel},
        padding{o.padding, o.padding},
        padding_r = !o.ceil_mode
                        ? padding
                        : memory::dims{(out[2] - 1) * o.stride + o.kernel - in[2] - o.padding,
                                       (out[3] - 1) * o.stride + o.kernel - in[3] - o.padding};
    x_md_ = onednn_desc(input_shape(), options().layout, context_.activation_dtype());
    y_md_ = onednn_desc(output_shape(), options().layout, context_.activation_dtype());
    const auto algo = dnnl::algorithm::pooling_max;
    const auto& engine = rt_.engine;

    dnnl::pooling_forward::desc train_desc(dnnl::prop_kind::forward_training, algo, x_md_, y_md_,
                                           strides, kernel, padding, padding_r);
    const dnnl::pooling_forward::primitive_desc train_pd(train_desc, engine);
    fwd_training_ = dnnl::pooling_forward(train_pd);

    dnnl::pooling_forward::desc infer_desc(dnnl::prop_kind::forward_inference, algo, x_md_, y_md_,
                                           strides, kernel, padding, padding_r);
    fwd_inference_ =
        dnnl::pooling_forward(dnnl::pooling_forward::primitive_desc(infer_desc, engine));

    dnnl::pooling_backward::desc bwd_desc(algo, x_md_, y_md_, strides, kernel, padding, padding_r);
    bwd_ =
        dnnl::pooling_backward(dnnl::pooling_backward::primitive_desc(bwd_desc, engine, train_pd));

    // The workspace's element type is oneDNN's choice (u8 or s32); it is held
    // as raw bytes in an f32 tensor so that it is counted by the allocator.
    const memory::desc ws_md = train_pd.workspace_desc();
    const auto floats =
        static_cast<int64_t>((ws_md.get_size() + sizeof(float) - 1) / sizeof(float));
    workspace_storage_ = Tensor::empty(Shape{floats}, context_.allocator());
    workspace_ = memory(ws_md, engine, workspace_storage_.raw_data());
  }

  memory mem(const memory::desc& md, const Tensor& t) const {
    return onednn_memory(md, rt_.engine, t);
  }

  void forward_impl(Mode mode, const Tensor& x, const Tensor& y) override {
    std::unordered_map<int, memory> args{{DNNL_ARG_SRC, mem(x_md_, x)},
                                         {DNNL_ARG_DST, mem(y_md_, y)}};
    if (mode == Mode::training) args.emplace(DNNL_ARG_WORKSPACE, workspace_);
    const dnnl::pooling_forward& fwd = mode == Mode::training ? fwd_training_ : fwd_inference_;
    onednn_call("max_pool2d " + name() + " forward", [&] {
      fwd.execute(rt_.stream, args);
      rt_.stream.wait();
    });
  }

  void backward_impl(const Tensor& dy, const Tensor& dx, GradMode dx_mode) override {
    const bool direct = dx_mode == GradMode::overwrite;
    const Tensor target =
        direct ? dx
               : context_.scratch_tensor(Scratch::activation, input_shape(), options().layout,
                                         context_.activation_dtype());
    onednn_call("max_pool2d " + name() + " backward", [&] {
      bwd_.execute(rt_.stream, {{DNNL_ARG_DIFF_DST, mem(y_md_, dy)},
                                {DNNL_ARG_WORKSPACE, workspace_},
                                {DNNL_ARG_DIFF_SRC, mem(x_md_, target)}});
      rt_.stream.wait();
    });
    if (!direct) add_into(dx, target);
  }

  Context& context_;
  OnednnRuntime& rt_;
  memory::desc x_md_, y_md_;
  dnnl::pooling_forward fwd_training_;
  dnnl::pooling_forward fwd_inference_;
  dnnl::pooling_backward bwd_;
  Tensor workspace_storage_;  // (ceil(workspace bytes / 4)), raw bytes of the argmax workspace
  memory workspace_;          // oneDNN's view of workspace_storage_
};

}  // namespace

std::unique_ptr<MaxPool2d> make_max_pool2d_onednn(Context& context, std::string name,
                                                  const MaxPool2dOptions& options,
                                                  const Shape& input_shape) {
  return std::make_unique<MaxPool2dOnednn>(context, std::move(name), options, input_shape);
}

}  // namespace convnet
