#include "layers/linear.h"

namespace convnet {

Linear::Linear(std::string name, const LinearOptions& options, const Shape& input_shape)
    : name_(std::move(name)), options_(options), input_shape_(input_shape) {
  CONVNET_CHECK(input_shape.rank() == 2 && input_shape.all_positive(), "layer ", name_,
                ": input shape ", input_shape, " must be (N, in_features) with every extent > 0");
  CONVNET_CHECK(options.in_features > 0 && options.out_features > 0, "layer ", name_,
                ": features must be > 0, got in ", options.in_features, " out ",
                options.out_features, " (input shape ", input_shape, ")");
  CONVNET_CHECK(input_shape[1] == options.in_features, "layer ", name_, ": input shape ",
                input_shape, " has ", input_shape[1], " features, expected ", options.in_features);
  output_shape_ = Shape{input_shape[0], options.out_features};
}

std::unique_ptr<Linear> Linear::create(Context& context, std::string name,
                                       const LinearOptions& options, const Shape& input_shape) {
  return create_on_backend(context, make_linear_onednn, CONVNET_GPU_FACTORY(make_linear_cublas),
                           std::move(name), options, input_shape);
}

void Linear::forward(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& y) {
  check_tensor(name_, "input", x, input_shape_);
  check_tensor(name_, "weight", weight, weight_shape());
  if (options_.bias) check_tensor(name_, "bias", bias, bias_shape());
  CONVNET_CHECK(options_.bias || !bias.defined(), "layer ", name_,
                ": bias given to a linear layer without bias");
  check_tensor(name_, "output", y, output_shape_);
  forward_impl(x, weight, bias, y);
}

void Linear::backward(const Tensor& x, const Tensor& weight, const Tensor& dy, const Tensor& dx,
                      GradMode dx_mode, const Tensor& dweight, const Tensor& dbias) {
  check_tensor(name_, "input", x, input_shape_);
  check_tensor(name_, "weight", weight, weight_shape());
  check_tensor(name_, "output gradient", dy, output_shape_);
  if (dx.defined()) check_tensor(name_, "input gradient", dx, input_shape_);
  check_tensor(name_, "weight gradient", dweight, weight_shape());
  if (options_.bias) check_tensor(name_, "bias gradient", dbias, bias_shape());
  backward_impl(x, weight, dy, dx, dx_mode, dweight, dbias);
}

}  // namespace convnet
