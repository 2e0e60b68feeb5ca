#include "layers/max_pool2d.h"

namespace convnet {

MaxPool2d::MaxPool2d(std::string name, const MaxPool2dOptions& options, const Shape& input_shape)
    : name_(std::move(name)),
      options_(options),
      input_shape_(input_shape),
      output_shape_(pool2d_output_shape(name_, input_shape, options.kernel, options.stride,
                                        options.padding, options.ceil_mode)) {
  check_layout(name_, input_shape, options.layout);
}

std::unique_ptr<MaxPool2d> MaxPool2d::create(Context& context, std::string name,
                                             const MaxPool2dOptions& options,
                                             const Shape& input_shape) {
  return create_on_backend(context, make_max_pool2d_onednn,
                           CONVNET_GPU_FACTORY(make_max_pool2d_cuda), std::move(name), options,
                           input_shape);
}

void MaxPool2d::forward(Mode mode, const Tensor& x, const Tensor& y) {
  check_tensor(name_, "input", x, input_shape_, options_.layout);
  check_tensor(name_, "output", y, output_shape_, options_.layout);
  forward_impl(mode, x, y);
  if (mode == Mode::training) has_training_forward_ = true;
}

void MaxPool2d::backward(const Tensor& dy, const Tensor& dx, GradMode dx_mode) {
  CONVNET_CHECK(has_training_forward_, "layer ", name_,
                ": backward needs a training forward first (it uses that forward's argmax)");
  check_tensor(name_, "output gradient", dy, output_shape_, options_.layout);
  check_tensor(name_, "input gradient", dx, input_shape_, options_.layout);
  backward_impl(dy, dx, dx_mode);
}

}  // namespace convnet
