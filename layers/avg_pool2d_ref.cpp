#include <algorithm>

#include "layers/avg_pool2d.h"

namespace convnet::ref {

namespace {

// Calls fn(n, c, oh, ow, ih, iw, weight) for every input element of every
// output's window, with weight = 1 / divisor; the divisor follows PyTorch:
// the window clipped to the padded input (count_include_pad) or to the input.
template <typename Fn>
void for_each_tap(const AvgPool2dOptions& o, const Shape& x_shape, Fn fn) {
  const int64_t h_in = x_shape[2], w_in = x_shape[3];
  const int64_t h_out = window_output_size(h_in, o.kernel, o.stride, o.padding);
  const int64_t w_out = window_output_size(w_in, o.kernel, o.stride, o.padding);
  for (int64_t n = 0; n < x_shape[0]; ++n)
    for (int64_t c = 0; c < x_shape[1]; ++c)
      for (int64_t oh = 0; oh < h_out; ++oh)
        for (int64_t ow = 0; ow < w_out; ++ow) {
          const int64_t h0 = oh * o.stride - o.padding, w0 = ow * o.stride - o.padding;
          const int64_t h1 = std::min(h0 + o.kernel, h_in + o.padding);
          const int64_t w1 = std::min(w0 + o.kernel, w_in + o.padding);
          const int64_t padded_count = (h1 - h0) * (w1 - w0);
          const int64_t hs = std::max<int64_t>(h0, 0), ws = std::max<int64_t>(w0, 0);
          const int64_t he = std::min(h1, h_in), we = std::min(w1, w_in);
          const int64_t inside_count = (he - hs) * (we - ws);
          const double weight = 1.0 / (o.count_include_pad ? padded_count : inside_count);
          for (int64_t ih = hs; ih < he; ++ih)
            for (int64_t iw = ws; iw < we; ++iw) fn(n, c, oh, ow, ih, iw, weight);
        }
}

}  // namespace

Array avg_pool2d_forward(const AvgPool2dOptions& o, const Array& x) {
  Array y(Shape{x.shape[0], x.shape[1],
                window_output_size(x.shape[2], o.kernel, o.stride, o.padding),
                window_output_size(x.shape[3], o.kernel, o.stride, o.padding)});
  for_each_tap(o, x.shape,
               [&](int64_t n, int64_t c, int64_t oh, int64_t ow, int64_t ih, int64_t iw,
                   double weight) { y.at(n, c, oh, ow) += weight * x.at(n, c, ih, iw); });
  return y;
}

Array avg_pool2d_backward(const AvgPool2dOptions& o, const Shape& x_shape, const Array& dy) {
  Array dx(x_shape);
  for_each_tap(o, x_shape,
               [&](int64_t n, int64_t c, int64_t oh, int64_t ow, int64_t ih, int64_t iw,
                   double weight) { dx.at(n, c, ih, iw) += weight * dy.at(n, c, oh, ow); });
  return dx;
}

}  // namespace convnet::ref
