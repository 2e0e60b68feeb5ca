#include "layers/window.h"

#include "core/error.h"

namespace convnet {

int64_t window_output_size(int64_t input, int64_t kernel, int64_t stride, int64_t padding,
                           bool ceil_mode) {
  // C++ division truncates toward zero, so a kernel that overhangs the padded
  // input by less than a stride would otherwise yield 1.
  const int64_t span = input + 2 * padding - kernel;
  if (span < 0) return 0;
  if (!ceil_mode) return span / stride + 1;
  int64_t out = (span + stride - 1) / stride + 1;
  if ((out - 1) * stride >= input + padding) --out;
  return out;
}

Shape pool2d_output_shape(const std::string& layer, const Shape& input, int64_t kernel,
                          int64_t stride, int64_t padding, bool ceil_mode) {
  CONVNET_CHECK(input.rank() == 4 && input.all_positive(), "layer ", layer, ": input shape ", input,
                " must be (N, C, H, W) with every extent > 0");
  CONVNET_CHECK(kernel > 0 && stride > 0, "layer ", layer, ": kernel ", kernel, " and stride ",
                stride, " must be > 0 (input shape ", input, ")");
  CONVNET_CHECK(padding >= 0, "layer ", layer, ": negative padding ", padding, " (input shape ",
                input, ")");
  CONVNET_CHECK(padding <= kernel / 2, "layer ", layer, ": padding ", padding,
                " must be at most half the kernel ", kernel, " (input shape ", input, ")");
  const int64_t h = window_output_size(input[2], kernel, stride, padding, ceil_mode);
  const int64_t w = window_output_size(input[3], kernel, stride, padding, ceil_mode);
  CONVNET_CHECK(h > 0 && w > 0, "layer ", layer, ": kernel ", kernel, " with padding ", padding,
                " does not fit input shape ", input);
  return Shape{input[0], input[1], h, w};
}

}  // namespace convnet
