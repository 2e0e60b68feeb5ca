#include "layers/conv2d.h"

#include <algorithm>

namespace convnet {

Conv2d::Conv2d(std::string name, const Conv2dOptions& options, const Shape& input_shape)
    : name_(std::move(name)), options_(options), input_shape_(input_shape) {
  const Conv2dOptions& o = options;
  CONVNET_CHECK(input_shape.rank() == 4 && input_shape.all_positive(), "layer ", name_,
                ": input shape ", input_shape, " must be (N, C, H, W) with every extent > 0");
  CONVNET_CHECK(o.in_channels > 0 && o.out_channels > 0, "layer ", name_,
                ": channels must be > 0, got in ", o.in_channels, " out ", o.out_channels);
  CONVNET_CHECK(o.kernel > 0 && o.stride > 0, "layer ", name_, ": kernel ", o.kernel,
                " and stride ", o.stride, " must be > 0");
  CONVNET_CHECK(o.padding >= 0, "layer ", name_, ": negative padding ", o.padding);
  CONVNET_CHECK(o.groups > 0 && o.in_channels % o.groups == 0 && o.out_channels % o.groups == 0,
                "layer ", name_, ": groups ", o.groups, " must divide in_channels ", o.in_channels,
                " and out_channels ", o.out_channels);
  CONVNET_CHECK(input_shape[1] == o.in_channels, "layer ", name_, ": input shape ", input_shape,
                " has ", input_shape[1], " channels, expected ", o.in_channels);
  const int64_t h = window_output_size(input_shape[2], o.kernel, o.stride, o.padding);
  const int64_t w = window_output_size(input_shape[3], o.kernel, o.stride, o.padding);
  CONVNET_CHECK(h > 0 && w > 0, "layer ", name_, ": kernel ", o.kernel, " with padding ", o.padding,
                " does not fit input shape ", input_shape);
  output_shape_ = Shape{input_shape[0], o.out_channels, h, w};
  // Blocked channels need not be a multiple of the block (the last block is
  // padded), but each group must be whole blocks.
  const int64_t block = std::max(channel_block(o.input_layout), channel_block(o.output_layout));
  CONVNET_CHECK(o.groups == 1 || ((o.in_channels / o.groups) % block == 0 &&
                                  (o.out_channels / o.groups) % block == 0),
                "layer ", name_, ": layout ", to_string(o.output_layout), " with ", o.groups,
                " groups needs channels per group that are a multiple of ", block);
}

Shape Conv2d::weight_shape() const {
  return Shape{options_.out_channels, options_.in_channels / options_.groups, options_.kernel,
               options_.kernel};
}

std::unique_ptr<Conv2d> Conv2d::create(Context& context, std::string name,
                                       const Conv2dOptions& options, const Shape& input_shape) {
  return create_on_backend(context, make_conv2d_onednn, CONVNET_GPU_FACTORY(make_conv2d_cudnn),
                           std::move(name), options, input_shape);
}

void Conv2d::forward(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& y) {
  check_tensor(name_, "input", x, input_shape_, options_.input_layout);
  check_tensor(name_, "weight", weight, weight_shape());
  if (options_.bias) check_tensor(name_, "bias", bias, bias_shape());
  CONVNET_CHECK(options_.bias || !bias.defined(), "layer ", name_,
                ": bias given to a conv without bias");
  check_tensor(name_, "output", y, output_shape_, options_.output_layout);
  forward_impl(x, weight, bias, y);
}

void Conv2d::backward(const Tensor& x, const Tensor& weight, const Tensor& dy, const Tensor& dx,
                      GradMode dx_mode, const Tensor& dweight, const Tensor& dbias) {
  check_tensor(name_, "input", x, input_shape_, options_.input_layout);
  check_tensor(name_, "weight", weight, weight_shape());
  check_tensor(name_, "output gradient", dy, output_shape_, options_.output_layout);
  if (dx.defined()) check_tensor(name_, "input gradient", dx, input_shape_, options_.input_layout);
  check_tensor(name_, "weight gradient", dweight, weight_shape());
  if (options_.bias) check_tensor(name_, "bias gradient", dbias, bias_shape());
  backward_impl(x, weight, dy, dx, dx_mode, dweight, dbias);
}

}  // namespace convnet
