#include "layers/relu.h"

namespace convnet::ref {

Array relu_forward(const Array& x) {
  Array y(x.shape);
  for (int64_t i = 0; i < x.numel(); ++i) y[i] = x[i] > 0 ? x[i] : 0.0;
  return y;
}

Array relu_backward(const Array& y, const Array& dy) {
  Array dx(y.shape);
  for (int64_t i = 0; i < y.numel(); ++i) dx[i] = y[i] > 0 ? dy[i] : 0.0;
  return dx;
}

}  // namespace convnet::ref
