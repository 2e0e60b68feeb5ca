#include <limits>

#include "layers/max_pool2d.h"

namespace convnet::ref {

namespace {

// Calls fn(n, c, oh, ow, ih, iw) for each output element with the position of
// its window's maximum in x; padding never wins (it acts as -inf), and on ties
// the first position in row-major window order wins.
template <typename Fn>
void for_each_argmax(const MaxPool2dOptions& o, const Array& x, Fn fn) {
  const int64_t h_in = x.shape[2], w_in = x.shape[3];
  const int64_t h_out = window_output_size(h_in, o.kernel, o.stride, o.padding, o.ceil_mode);
  const int64_t w_out = window_output_size(w_in, o.kernel, o.stride, o.padding, o.ceil_mode);
  for (int64_t n = 0; n < x.shape[0]; ++n)
    for (int64_t c = 0; c < x.shape[1]; ++c)
      for (int64_t oh = 0; oh < h_out; ++oh)
        for (int64_t ow = 0; ow < w_out; ++ow) {
          double best = -std::numeric_limits<double>::infinity();
          int64_t best_h = -1, best_w = -1;
          for (int64_t kh = 0; kh < o.kernel; ++kh)
            for (int64_t kw = 0; kw < o.kernel; ++kw) {
              const int64_t ih = oh * o.stride - o.padding + kh;
              const int64_t iw = ow * o.stride - o.padding + kw;
              if (ih < 0 || ih >= h_in || iw < 0 || iw >= w_in) continue;
              if (x.at(n, c, ih, iw) > best) {
                best = x.at(n, c, ih, iw);
                best_h = ih;
                best_w = iw;
              }
            }
          fn(n, c, oh, ow, best_h, best_w);
        }
}

}  // namespace

Array max_pool2d_forward(const MaxPool2dOptions& o, const Array& x) {
  Array y(Shape{x.shape[0], x.shape[1],
                window_output_size(x.shape[2], o.kernel, o.stride, o.padding, o.ceil_mode),
                window_output_size(x.shape[3], o.kernel, o.stride, o.padding, o.ceil_mode)});
  for_each_argmax(o, x, [&](int64_t n, int64_t c, int64_t oh, int64_t ow, int64_t ih, int64_t iw) {
    y.at(n, c, oh, ow) = x.at(n, c, ih, iw);
  });
  return y;
}

Array max_pool2d_backward(const MaxPool2dOptions& o, const Array& x, const Array& dy) {
  Array dx(x.shape);
  for_each_argmax(o, x, [&](int64_t n, int64_t c, int64_t oh, int64_t ow, int64_t ih, int64_t iw) {
    dx.at(n, c, ih, iw) += dy.at(n, c, oh, ow);
  });
  return dx;
}

}  // namespace convnet::ref
