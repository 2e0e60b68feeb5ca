#include "layers/relu.h"

namespace convnet {

Relu::Relu(std::string name, const Shape& shape, Layout layout)
    : name_(std::move(name)), shape_(shape), layout_(layout) {
  CONVNET_CHECK(shape.rank() >= 1 && shape.all_positive(), "layer ", name_, ": shape ", shape,
                " must have rank >= 1 and every extent > 0");
  check_layout(name_, shape, layout);
}

std::unique_ptr<Relu> Relu::create(Context& context, std::string name, const Shape& shape,
                                   Layout layout) {
  return create_on_backend(context, make_relu_onednn, CONVNET_GPU_FACTORY(make_relu_cuda),
                           std::move(name), shape, layout);
}

void Relu::forward(const Tensor& x, const Tensor& y) {
  check_tensor(name_, "input", x, shape_, layout_);
  check_tensor(name_, "output", y, shape_, layout_);
  forward_impl(x, y);
}

void Relu::backward(const Tensor& y, const Tensor& dy, const Tensor& dx, GradMode dx_mode) {
  check_tensor(name_, "output", y, shape_, layout_);
  check_tensor(name_, "output gradient", dy, shape_, layout_);
  check_tensor(name_, "input gradient", dx, shape_, layout_);
  backward_impl(y, dy, dx, dx_mode);
}

}  // namespace convnet
