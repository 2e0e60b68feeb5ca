#include "layers/concat.h"

namespace convnet::ref {

Array concat_forward(const std::vector<Array>& inputs) {
  const Shape& first = inputs.front().shape;
  int64_t channels = 0;
  for (const Array& x : inputs) channels += x.shape[1];
  Array y(Shape{first[0], channels, first[2], first[3]});
  int64_t offset = 0;
  for (const Array& x : inputs) {
    for (int64_t n = 0; n < x.shape[0]; ++n)
      for (int64_t c = 0; c < x.shape[1]; ++c)
        for (int64_t h = 0; h < x.shape[2]; ++h)
          for (int64_t w = 0; w < x.shape[3]; ++w) y.at(n, offset + c, h, w) = x.at(n, c, h, w);
    offset += x.shape[1];
  }
  return y;
}

std::vector<Array> concat_backward(const std::vector<Shape>& input_shapes, const Array& dy) {
  std::vector<Array> dxs;
  int64_t offset = 0;
  for (const Shape& s : input_shapes) {
    Array dx(s);
    for (int64_t n = 0; n < s[0]; ++n)
      for (int64_t c = 0; c < s[1]; ++c)
        for (int64_t h = 0; h < s[2]; ++h)
          for (int64_t w = 0; w < s[3]; ++w) dx.at(n, c, h, w) = dy.at(n, offset + c, h, w);
    offset += s[1];
    dxs.push_back(std::move(dx));
  }
  return dxs;
}

}  // namespace convnet::ref
