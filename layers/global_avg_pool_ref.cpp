#include "layers/global_avg_pool.h"

namespace convnet::ref {

Array global_avg_pool_forward(const Array& x) {
  const int64_t h = x.shape[2], w = x.shape[3];
  Array y(Shape{x.shape[0], x.shape[1]});
  for (int64_t n = 0; n < x.shape[0]; ++n)
    for (int64_t c = 0; c < x.shape[1]; ++c) {
      double sum = 0;
      for (int64_t i = 0; i < h; ++i)
        for (int64_t j = 0; j < w; ++j) sum += x.at(n, c, i, j);
      y.at(n, c) = sum / static_cast<double>(h * w);
    }
  return y;
}

Array global_avg_pool_backward(const Shape& x_shape, const Array& dy) {
  const int64_t h = x_shape[2], w = x_shape[3];
  Array dx(x_shape);
  for (int64_t n = 0; n < x_shape[0]; ++n)
    for (int64_t c = 0; c < x_shape[1]; ++c)
      for (int64_t i = 0; i < h; ++i)
        for (int64_t j = 0; j < w; ++j)
          dx.at(n, c, i, j) = dy.at(n, c) / static_cast<double>(h * w);
  return dx;
}

}  // namespace convnet::ref
