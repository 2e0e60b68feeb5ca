// Concat on oneDNN: one concat primitive built once in the constructor, from
// plain (contiguous) input memory into output memory with the layer's output
// strides, so y may be a channel slice of a larger buffer. Backward needs no
// arithmetic: each input gradient is a copy (or sum) of a channel slice view of
// dy, done by write_gradient (layers/layer.h), which accepts any dy strides.
// In a blocked layout the slices are whole channel blocks of dy: oneDNN
// reorders from a sub-memory of dy, built once per input (copy and sum).
#include <oneapi/dnnl/dnnl.hpp>

#include "core/onednn.h"
#include "layers/concat.h"

namespace convnet {
namespace {

using dnnl::memory;

class ConcatOnednn final : public Concat {
 public:
  ConcatOnednn(Context& context, std::string name, const ConcatOptions& options,
               const std::vector<Shape>& input_shapes)
      : Concat(std::move(name), options, input_shapes), rt_(context.onednn()) {
    onednn_call("building concat " + this->name(), [&] { build(context.activation_dtype()); });
  }

 private:
  void build(DType dtype) {
    const Layout layout = options().layout;
    const bool blocked = is_blocked(layout);
    for (const Shape& s : input_shapes())
      x_mds_.push_back(blocked ? onednn_desc(s, layout, dtype)
                               : onednn_desc(s, s.contiguous_strides(), dtype));
    y_md_ = blocked ? onednn_desc(output_shape(), layout, dtype)
                    : onednn_desc(output_shape(), output_strides(), dtype);
    concat_ = dnnl::concat(
        dnnl::concat::primitive_desc(y_md_, /*concat_dimension=*/1, x_mds_, rt_.engine));
    if (blocked) build_slice_reorders();
  }

  // dinputs[k] (+)= the channel blocks of dy that input k filled.
  void build_slice_reorders() {
    dnnl::primitive_attr sum;
    dnnl::post_ops add;
    add.append_sum(1.0f);
    sum.set_post_ops(add);
    int64_t offset = 0;
    for (std::size_t k = 0; k < x_mds_.size(); ++k) {
      const Shape& s = input_shapes()[k];
      slice_mds_.push_back(y_md_.submemory_desc({s[0], s[1], s[2], s[3]}, {0, offset, 0, 0}));
      const auto& e = rt_.engine;
      copy_.emplace_back(dnnl::reorder::primitive_desc(e, slice_mds_[k], e, x_mds_[k]));
      add_.emplace_back(dnnl::reorder::primitive_desc(e, slice_mds_[k], e, x_mds_[k], sum));
      offset += s[1];
    }
  }

  void forward_impl(const std::vector<Tensor>& inputs, const Tensor& y) override {
    std::unordered_map<int, memory> args{{DNNL_ARG_DST, onednn_memory(y_md_, rt_.engine, y)}};
    for (std::size_t k = 0; k < inputs.size(); ++k)
      args.emplace(DNNL_ARG_MULTIPLE_SRC + static_cast<int>(k),
                   onednn_memory(x_mds_[k], rt_.engine, inputs[k]));
    onednn_call("concat " + name() + " forward", [&] {
      concat_.execute(rt_.stream, args);
      rt_.stream.wait();
    });
  }

  void backward_impl(const Tensor& dy, const std::vector<Tensor>& dinputs,
                     const std::vector<GradMode>& dinput_modes) override {
    if (!slice_mds_.empty()) return backward_blocked(dy, dinputs, dinput_modes);
    int64_t offset = 0;
    for (std::size_t k = 0; k < dinputs.size(); ++k) {
      const int64_t channels = input_shapes()[k][1];
      if (dinputs[k].defined())
        write_gradient(dinputs[k], dy.slice(1, offset, offset + channels), dinput_modes[k]);
      offset += channels;
    }
  }

  void backward_blocked(const Tensor& dy, const std::vector<Tensor>& dinputs,
                        const std::vector<GradMode>& modes) {
    onednn_call("concat " + name() + " backward", [&] {
      for (std::size_t k = 0; k < dinputs.size(); ++k) {
        if (!dinputs[k].defined()) continue;
        const dnnl::reorder& r = modes[k] == GradMode::accumulate ? add_[k] : copy_[k];
        memory slice = onednn_memory(slice_mds_[k], rt_.engine, dy);
        memory target = onednn_memory(x_mds_[k], rt_.engine, dinputs[k]);
        r.execute(rt_.stream, slice, target);
      }
      rt_.stream.wait();
    });
  }

  OnednnRuntime& rt_;
  std::vector<memory::desc> slice_mds_;  // blocked: input k's channel blocks of dy
  std::vector<dnnl::reorder> copy_, add_;
  std::vector<memory::desc> x_mds_;  // plain (N, C_k, H, W) each, or blocked
  memory::desc y_md_;                // (N, sum_k C_k, H, W) with the output strides
  dnnl::concat concat_;
};

}  // namespace

std::unique_ptr<Concat> make_concat_onednn(Context& context, std::string name,
                                           const ConcatOptions& options,
                                           const std::vector<Shape>& input_shapes) {
  return std::make_unique<ConcatOnednn>(context, std::move(name), options, input_shapes);
}

}  // namespace convnet
