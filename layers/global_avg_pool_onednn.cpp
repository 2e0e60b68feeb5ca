// GlobalAvgPool on oneDNN: an average pooling whose kernel is the whole
// (H, W) plane, with the (N, C) output viewed as (N, C, 1, 1) (same memory).
// Pooling rather than a reduction primitive because it has a backward.
// Primitives are built once in the constructor, with plain NCHW memory.
#include <oneapi/dnnl/dnnl.hpp>

#include "core/onednn.h"
#include "layers/global_avg_pool.h"

namespace convnet {
namespace {

using dnnl::memory;
using tag = memory::format_tag;

class GlobalAvgPoolOnednn final : public GlobalAvgPool {
 public:
  GlobalAvgPoolOnednn(Context& context, std::string name, const Shape& input_shape,
                      Layout input_layout)
      : GlobalAvgPool(std::move(name), input_shape, input_layout),
        context_(context),
        rt_(context.onednn()) {
    onednn_call("building global_avg_pool " + this->name(), [&] { build(); });
  }

 private:
  void build() {
    const Shape& in = input_shape();
    const memory::dims strides{1, 1}, kernel{in[2], in[3]}, padding{0, 0};
    const DType dt = context_.activation_dtype();
    x_md_ = onednn_desc(in, input_layout(), dt);
    // With a blocked input the output is described as blocked too (oneDNN's fast
    // kernels want matching layouts): for (N, C, 1, 1) with C a multiple of the
    // block, nChw8c / nChw16c and row-major (N, C) are the same bytes. With padded channels they
    // are not (oneDNN has only its reference kernel for a plain output), so the output goes through
    // a blocked copy in scratch.
    const Shape pooled{in[0], in[1], 1, 1};
    y_md_ = onednn_desc(pooled, input_layout(), dt);
    if (in[1] % channel_block(input_layout()) != 0) {
      y_plain_md_ = onednn_desc(pooled, Layout::nchw, dt);
      to_plain_ =
          dnnl::reorder(dnnl::reorder::primitive_desc(rt_.engine, y_md_, rt_.engine, y_plain_md_));
      from_plain_ =
          dnnl::reorder(dnnl::reorder::primitive_desc(rt_.engine, y_plain_md_, rt_.engine, y_md_));
      padded_ = true;
    }
    // No padding, so include/exclude padding both divide by H * W.
    const auto algo = dnnl::algorithm::pooling_avg_exclude_padding;
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
  memory output_mem(const Tensor& t) const { return memory(y_md_, rt_.engine, t.raw_data()); }
  memory padded_copy() const {
    return memory(y_md_, rt_.engine, context_.scratch(Scratch::layout_copy, y_md_.get_size()));
  }

  void forward_impl(const Tensor& x, const Tensor& y) override {
    onednn_call("global_avg_pool " + name() + " forward", [&] {
      if (!padded_) {
        fwd_.execute(rt_.stream, {{DNNL_ARG_SRC, mem(x_md_, x)}, {DNNL_ARG_DST, output_mem(y)}});
      } else {
        memory blocked = padded_copy(), plain(y_plain_md_, rt_.engine, y.raw_data());
        fwd_.execute(rt_.stream, {{DNNL_ARG_SRC, mem(x_md_, x)}, {DNNL_ARG_DST, blocked}});
        to_plain_.execute(rt_.stream, blocked, plain);
      }
      rt_.stream.wait();
    });
  }

  void backward_impl(const Tensor& dy, const Tensor& dx, GradMode dx_mode) override {
    const bool direct = dx_mode == GradMode::overwrite;
    const Tensor target =
        direct ? dx
               : context_.scratch_tensor(Scratch::activation, input_shape(), input_layout(),
                                         context_.activation_dtype());
    onednn_call("global_avg_pool " + name() + " backward", [&] {
      // With padding, dy (plain, N * C floats) must not be described as the
      // blocked y_md_ (N * ceil(C/B) * B): oneDNN would zero "padding" in it.
      memory diff_dst = padded_ ? padded_copy() : output_mem(dy);
      if (padded_) {
        memory plain(y_plain_md_, rt_.engine, dy.raw_data());
        from_plain_.execute(rt_.stream, plain, diff_dst);
      }
      bwd_.execute(rt_.stream,
                   {{DNNL_ARG_DIFF_DST, diff_dst}, {DNNL_ARG_DIFF_SRC, mem(x_md_, target)}});
      rt_.stream.wait();
    });
    if (!direct) add_into(dx, target);
  }

  Context& context_;
  OnednnRuntime& rt_;
  memory::desc x_md_;  // (N, C, H, W)
  memory::desc y_md_;  // (N, C, 1, 1), the memory of the (N, C) output
  // Padded blocked channels: y_md_ is a scratch copy, y_plain_md_ the output.
  bool padded_ = false;
  memory::desc y_plain_md_;
  dnnl::reorder to_plain_, from_plain_;
  dnnl::pooling_forward fwd_;
  dnnl::pooling_backward bwd_;
};

}  // namespace

std::unique_ptr<GlobalAvgPool> make_global_avg_pool_onednn(Context& context, std::string name,
                                                           const Shape& input_shape,
                                                           Layout input_layout) {
  return std::make_unique<GlobalAvgPoolOnednn>(context, std::move(name), input_shape, input_layout);
}

}  // namespace convnet
