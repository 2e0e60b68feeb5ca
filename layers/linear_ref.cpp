#include "layers/linear.h"

namespace convnet::ref {

Array linear_forward(const Array& x, const Array& weight, const Array* bias) {
  const int64_t batch = x.shape[0], in = x.shape[1], out = weight.shape[0];
  Array y(Shape{batch, out});
  for (int64_t n = 0; n < batch; ++n)
    for (int64_t o = 0; o < out; ++o) {
      double sum = bias ? (*bias)[o] : 0.0;
      for (int64_t i = 0; i < in; ++i) sum += x.at(n, i) * weight.at(o, i);
      y.at(n, o) = sum;
    }
  return y;
}

LinearGrads linear_backward(const Array& x, const Array& weight, const Array& dy) {
  const int64_t batch = x.shape[0], in = x.shape[1], out = weight.shape[0];
  LinearGrads g{Array(x.shape), Array(weight.shape), Array(Shape{out})};
  for (int64_t n = 0; n < batch; ++n)
    for (int64_t o = 0; o < out; ++o) {
      g.dbias[o] += dy.at(n, o);
      for (int64_t i = 0; i < in; ++i) {
        g.dx.at(n, i) += dy.at(n, o) * weight.at(o, i);
        g.dweight.at(o, i) += dy.at(n, o) * x.at(n, i);
      }
    }
  return g;
}

}  // namespace convnet::ref
