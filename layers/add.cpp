#include "layers/add.h"

namespace convnet {

Add::Add(std::string name, const Shape& a_shape, const Shape& b_shape, Layout layout)
    : name_(std::move(name)), shape_(a_shape), layout_(layout) {
  CONVNET_CHECK(a_shape == b_shape, "layer ", name_, ": cannot add inputs of shapes ", a_shape,
                " and ", b_shape, " (they must be equal)");
  CONVNET_CHECK(a_shape.rank() >= 1 && a_shape.all_positive(), "layer ", name_, ": input shapes ",
                a_shape, " and ", b_shape, " must have rank >= 1 and every extent > 0");
  check_layout(name_, a_shape, layout);
}

std::unique_ptr<Add> Add::create(Context& context, std::string name, const Shape& a_shape,
                                 const Shape& b_shape, Layout layout) {
  return create_on_backend(context, make_add_onednn, CONVNET_GPU_FACTORY(make_add_cuda),
                           std::move(name), a_shape, b_shape, layout);
}

void Add::forward(const Tensor& a, const Tensor& b, const Tensor& y) {
  check_tensor(name_, "first input", a, shape_, layout_);
  check_tensor(name_, "second input", b, shape_, layout_);
  check_tensor(name_, "output", y, shape_, layout_);
  forward_impl(a, b, y);
}

void Add::backward(const Tensor& dy, const Tensor& da, GradMode da_mode, const Tensor& db,
                   GradMode db_mode) {
  check_tensor(name_, "output gradient", dy, shape_, layout_);
  if (da.defined()) check_tensor(name_, "first input gradient", da, shape_, layout_);
  if (db.defined()) check_tensor(name_, "second input gradient", db, shape_, layout_);
  backward_impl(dy, da, da_mode, db, db_mode);
}

}  // namespace convnet
