#include "layers/global_avg_pool.h"

namespace convnet {

GlobalAvgPool::GlobalAvgPool(std::string name, const Shape& input_shape, Layout input_layout)
    : name_(std::move(name)), input_shape_(input_shape), input_layout_(input_layout) {
  CONVNET_CHECK(input_shape.rank() == 4 && input_shape.all_positive(), "layer ", name_,
                ": input shape ", input_shape, " must be (N, C, H, W) with every extent > 0");
  output_shape_ = Shape{input_shape[0], input_shape[1]};
  check_layout(name_, input_shape, input_layout);
}

std::unique_ptr<GlobalAvgPool> GlobalAvgPool::create(Context& context, std::string name,
                                                     const Shape& input_shape,
                                                     Layout input_layout) {
  return create_on_backend(context, make_global_avg_pool_onednn,
                           CONVNET_GPU_FACTORY(make_global_avg_pool_cuda), std::move(name),
                           input_shape, input_layout);
}

void GlobalAvgPool::forward(const Tensor& x, const Tensor& y) {
  check_tensor(name_, "input", x, input_shape_, input_layout_);
  check_tensor(name_, "output", y, output_shape_);
  forward_impl(x, y);
}

void GlobalAvgPool::backward(const Tensor& dy, const Tensor& dx, GradMode dx_mode) {
  check_tensor(name_, "output gradient", dy, output_shape_);
  check_tensor(name_, "input gradient", dx, input_shape_, input_layout_);
  backward_impl(dy, dx, dx_mode);
}

}  // namespace convnet
