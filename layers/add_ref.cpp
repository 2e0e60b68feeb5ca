#include "layers/add.h"

namespace convnet::ref {

Array add_forward(const Array& a, const Array& b) {
  Array y(a.shape);
  for (int64_t i = 0; i < a.numel(); ++i) y[i] = a[i] + b[i];
  return y;
}

AddGrads add_backward(const Array& dy) { return AddGrads{dy, dy}; }

}  // namespace convnet::ref
