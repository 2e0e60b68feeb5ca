#include "layers/pad_shortcut.h"

namespace convnet::ref {

Array pad_shortcut_forward(const Array& x, const Shape& output_shape, int64_t stride) {
  Array y(output_shape);
  const int64_t pad = (output_shape[1] - x.shape[1]) / 2;
  for (int64_t n = 0; n < output_shape[0]; ++n)
    for (int64_t c = 0; c < x.shape[1]; ++c)
      for (int64_t i = 0; i < output_shape[2]; ++i)
        for (int64_t j = 0; j < output_shape[3]; ++j)
          y.at(n, pad + c, i, j) = x.at(n, c, i * stride, j * stride);
  return y;
}

Array pad_shortcut_backward(const Array& dy, const Shape& input_shape, int64_t stride) {
  Array dx(input_shape);
  const int64_t pad = (dy.shape[1] - input_shape[1]) / 2;
  for (int64_t n = 0; n < input_shape[0]; ++n)
    for (int64_t c = 0; c < input_shape[1]; ++c)
      for (int64_t i = 0; i < dy.shape[2]; ++i)
        for (int64_t j = 0; j < dy.shape[3]; ++j)
          dx.at(n, c, i * stride, j * stride) = dy.at(n, pad + c, i, j);
  return dx;
}

}  // namespace convnet::ref
