#include "layers/pad_shortcut.h"

namespace convnet {

PadShortcut::PadShortcut(std::string name, const Shape& input_shape, const Shape& output_shape,
                         int64_t stride, Layout layout)
    : name_(std::move(name)),
      input_shape_(input_shape),
      output_shape_(output_shape),
      stride_(stride),
      layout_(layout) {
  CONVNET_CHECK(input_shape.rank() == 4 && input_shape.all_positive() && output_shape.rank() == 4,
                "layer ", name_, ": input ", input_shape, " and output ", output_shape,
                " must be (N, C, H, W) with every extent > 0");
  CONVNET_CHECK(stride > 0, "layer ", name_, ": stride must be > 0, got ", stride);
  const int64_t extra = output_shape[1] - input_shape[1];
  CONVNET_CHECK(output_shape[0] == input_shape[0] && extra >= 0 && extra % 2 == 0 &&
                    output_shape[2] == (input_shape[2] + stride - 1) / stride &&
                    output_shape[3] == (input_shape[3] + stride - 1) / stride,
                "layer ", name_, ": output ", output_shape, " is not input ", input_shape,
                " subsampled by ", stride, " with an even number of channels added");
  check_layout(name_, input_shape, layout);
}

std::unique_ptr<PadShortcut> PadShortcut::create(Context& context, std::string name,
                                                 const Shape& input_shape,
                                                 const Shape& output_shape, int64_t stride,
                                                 Layout layout) {
  return create_on_backend(context, make_pad_shortcut_cpu,
                           CONVNET_GPU_FACTORY(make_pad_shortcut_cuda), std::move(name),
                           input_shape, output_shape, stride, layout);
}

void PadShortcut::forward(const Tensor& x, const Tensor& y) {
  check_tensor(name_, "input", x, input_shape_, layout_);
  check_tensor(name_, "output", y, output_shape_, layout_);
  forward_impl(x, y);
}

void PadShortcut::backward(const Tensor& dy, const Tensor& dx, GradMode dx_mode) {
  check_tensor(name_, "output gradient", dy, output_shape_, layout_);
  check_tensor(name_, "input gradient", dx, input_shape_, layout_);
  backward_impl(dy, dx, dx_mode);
}

}  // namespace convnet
