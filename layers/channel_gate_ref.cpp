#include <cmath>

#include "layers/channel_gate.h"

namespace convnet::ref {

namespace {
double sigmoid(double v) { return 1.0 / (1.0 + std::exp(-v)); }
}  // namespace

Array channel_gate_forward(const Array& x, const Array& s) {
  Array y(x.shape);
  for (int64_t n = 0; n < x.shape[0]; ++n)
    for (int64_t c = 0; c < x.shape[1]; ++c) {
      const double g = sigmoid(s.at(n, c));
      for (int64_t h = 0; h < x.shape[2]; ++h)
        for (int64_t w = 0; w < x.shape[3]; ++w) y.at(n, c, h, w) = x.at(n, c, h, w) * g;
    }
  return y;
}

ChannelGateGrads channel_gate_backward(const Array& x, const Array& s, const Array& dy) {
  ChannelGateGrads grads{Array(x.shape), Array(s.shape)};
  for (int64_t n = 0; n < x.shape[0]; ++n)
    for (int64_t c = 0; c < x.shape[1]; ++c) {
      const double g = sigmoid(s.at(n, c));
      double sum = 0;
      for (int64_t h = 0; h < x.shape[2]; ++h)
        for (int64_t w = 0; w < x.shape[3]; ++w) {
          grads.dx.at(n, c, h, w) = dy.at(n, c, h, w) * g;
          sum += dy.at(n, c, h, w) * x.at(n, c, h, w);
        }
      grads.ds.at(n, c) = sum * g * (1 - g);
    }
  return grads;
}

}  // namespace convnet::ref
