#include <cmath>

#include "layers/batch_norm.h"

namespace convnet::ref {

namespace {

// Calls fn(c, index) for every element index of channel c of an (N, C, H, W) array.
template <typename Fn>
void for_each_element(const Shape& shape, Fn fn) {
  const int64_t n_batch = shape[0], channels = shape[1], plane = shape[2] * shape[3];
  for (int64_t n = 0; n < n_batch; ++n)
    for (int64_t c = 0; c < channels; ++c)
      for (int64_t i = 0; i < plane; ++i) fn(c, (n * channels + c) * plane + i);
}

}  // namespace

BatchNormForward batch_norm_forward(const BatchNormOptions& o, Mode mode, const Array& x,
                                    const Array& weight, const Array& bias,
                                    const Array& running_mean, const Array& running_var) {
  const Shape channels{o.channels};
  BatchNormForward f{Array(x.shape), running_mean, running_var, running_mean, running_var};
  if (mode == Mode::training) {
    const double count = static_cast<double>(x.numel() / o.channels);
    f.mean = Array(channels);
    f.var = Array(channels);
    for_each_element(x.shape, [&](int64_t c, int64_t i) { f.mean[c] += x[i] / count; });
    for_each_element(x.shape, [&](int64_t c, int64_t i) {
      f.var[c] += (x[i] - f.mean[c]) * (x[i] - f.mean[c]) / count;
    });
    for (int64_t c = 0; c < o.channels; ++c) {
      f.running_mean[c] = (1 - o.momentum) * running_mean[c] + o.momentum * f.mean[c];
      f.running_var[c] =
          (1 - o.momentum) * running_var[c] + o.momentum * f.var[c] * count / (count - 1);
    }
  }
  for_each_element(x.shape, [&](int64_t c, int64_t i) {
    f.y[i] = weight[c] * (x[i] - f.mean[c]) / std::sqrt(f.var[c] + o.eps) + bias[c];
  });
  return f;
}

BatchNormGrads batch_norm_backward(const BatchNormOptions& o, Mode mode, const Array& x,
                                   const Array& weight, const Array& dy, const Array& mean,
                                   const Array& var) {
  const Shape channels{o.channels};
  BatchNormGrads g{Array(x.shape), Array(channels), Array(channels)};
  Array inv_std(channels);
  for (int64_t c = 0; c < o.channels; ++c) inv_std[c] = 1 / std::sqrt(var[c] + o.eps);
  const auto x_hat = [&](int64_t c, int64_t i) { return (x[i] - mean[c]) * inv_std[c]; };
  for_each_element(x.shape, [&](int64_t c, int64_t i) {
    g.dbias[c] += dy[i];
    g.dweight[c] += dy[i] * x_hat(c, i);
  });
  if (mode == Mode::inference) {
    for_each_element(x.shape,
                     [&](int64_t c, int64_t i) { g.dx[i] = dy[i] * weight[c] * inv_std[c]; });
    return g;
  }
  // Through the batch statistics: dx = weight * inv_std * (dy - mean(dy) - x_hat * mean(dy *
  // x_hat)).
  const double count = static_cast<double>(x.numel() / o.channels);
  for_each_element(x.shape, [&](int64_t c, int64_t i) {
    g.dx[i] =
        weight[c] * inv_std[c] * (dy[i] - g.dbias[c] / count - x_hat(c, i) * g.dweight[c] / count);
  });
  return g;
}

}  // namespace convnet::ref
