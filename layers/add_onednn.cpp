// Add on oneDNN: one binary_add primitive built once in the constructor over
// plain (contiguous) memory. Backward is only copies of dy, done by
// write_gradient (layers/layer.h).
#include <oneapi/dnnl/dnnl.hpp>

#include "core/onednn.h"
#include "layers/add.h"

namespace convnet {
namespace {

using dnnl::memory;

class AddOnednn final : public Add {
 public:
  AddOnednn(Context& context, std::string name, const Shape& a_shape, const Shape& b_shape,
            Layout layout)
      : Add(std::move(name), a_shape, b_shape, layout), rt_(context.onednn()) {
    onednn_call("building add " + this->name(), [&] { build(context.activation_dtype()); });
  }

 private:
  void build(DType dtype) {
    md_ = onednn_desc(input_shape(), layout(), dtype);
    dnnl::binary::desc desc(dnnl::algorithm::binary_add, md_, md_, md_);
    add_ = dnnl::binary(dnnl::binary::primitive_desc(desc, rt_.engine));
  }

  memory mem(const Tensor& t) const { return onednn_memory(md_, rt_.engine, t); }

  void forward_impl(const Tensor& a, const Tensor& b, const Tensor& y) override {
    onednn_call("add " + name() + " forward", [&] {
      add_.execute(rt_.stream,
                   {{DNNL_ARG_SRC_0, mem(a)}, {DNNL_ARG_SRC_1, mem(b)}, {DNNL_ARG_DST, mem(y)}});
      rt_.stream.wait();
    });
  }

  void backward_impl(const Tensor& dy, const Tensor& da, GradMode da_mode, const Tensor& db,
                     GradMode db_mode) override {
    if (da.defined()) write_gradient(da, dy, da_mode);
    if (db.defined()) write_gradient(db, dy, db_mode);
  }

  OnednnRuntime& rt_;
  memory::desc md_;  // the layer's shape and layout
  dnnl::binary add_;
};

}  // namespace

std::unique_ptr<Add> make_add_onednn(Context& context, std::string name, const Shape& a_shape,
                                     const Shape& b_shape, Layout layout) {
  return std::make_unique<AddOnednn>(context, std::move(name), a_shape, b_shape, layout);
}

}  // namespace convnet
