#include "layers/conv2d.h"

namespace convnet::ref {

namespace {

// Visits every (output element, weight element, input element) triple that
// contributes to the convolution, in double precision.
template <typename Fn>
void for_each_tap(const Conv2dOptions& o, const Shape& x_shape, Fn fn) {
  const int64_t n_batch = x_shape[0], h_in = x_shape[2], w_in = x_shape[3];
  const int64_t h_out = window_output_size(h_in, o.kernel, o.stride, o.padding);
  const int64_t w_out = window_output_size(w_in, o.kernel, o.stride, o.padding);
  const int64_t cin_per_group = o.in_channels / o.groups;
  const int64_t cout_per_group = o.out_channels / o.groups;
  for (int64_t n = 0; n < n_batch; ++n)
    for (int64_t co = 0; co < o.out_channels; ++co) {
      const int64_t g = co / cout_per_group;
      for (int64_t oh = 0; oh < h_out; ++oh)
        for (int64_t ow = 0; ow < w_out; ++ow)
          for (int64_t ci = 0; ci < cin_per_group; ++ci)
            for (int64_t kh = 0; kh < o.kernel; ++kh)
              for (int64_t kw = 0; kw < o.kernel; ++kw) {
                const int64_t ih = oh * o.stride - o.padding + kh;
                const int64_t iw = ow * o.stride - o.padding + kw;
                if (ih < 0 || ih >= h_in || iw < 0 || iw >= w_in) continue;
                fn(n, co, oh, ow, g * cin_per_group + ci, ih, iw, ci, kh, kw);
              }
    }
}

}  // namespace

Array conv2d_forward(const Conv2dOptions& o, const Array& x, const Array& weight,
                     const Array* bias) {
  const int64_t h_out = window_output_size(x.shape[2], o.kernel, o.stride, o.padding);
  const int64_t w_out = window_output_size(x.shape[3], o.kernel, o.stride, o.padding);
  Array y(Shape{x.shape[0], o.out_channels, h_out, w_out});
  for_each_tap(o, x.shape,
               [&](int64_t n, int64_t co, int64_t oh, int64_t ow, int64_t c, int64_t ih, int64_t iw,
                   int64_t ci, int64_t kh, int64_t kw) {
                 y.at(n, co, oh, ow) += x.at(n, c, ih, iw) * weight.at(co, ci, kh, kw);
               });
  if (bias)
    for (int64_t n = 0; n < y.shape[0]; ++n)
      for (int64_t co = 0; co < o.out_channels; ++co)
        for (int64_t i = 0; i < h_out; ++i)
          for (int64_t j = 0; j < w_out; ++j) y.at(n, co, i, j) += (*bias)[co];
  return y;
}

Conv2dGrads conv2d_backward(const Conv2dOptions& o, const Array& x, const Array& weight,
                            const Array& dy) {
  Conv2dGrads g{Array(x.shape), Array(weight.shape), Array(Shape{o.out_channels})};
  for_each_tap(o, x.shape,
               [&](int64_t n, int64_t co, int64_t oh, int64_t ow, int64_t c, int64_t ih, int64_t iw,
                   int64_t ci, int64_t kh, int64_t kw) {
                 g.dx.at(n, c, ih, iw) += dy.at(n, co, oh, ow) * weight.at(co, ci, kh, kw);
                 g.dweight.at(co, ci, kh, kw) += dy.at(n, co, oh, ow) * x.at(n, c, ih, iw);
               });
  for (int64_t n = 0; n < dy.shape[0]; ++n)
    for (int64_t co = 0; co < o.out_channels; ++co)
      for (int64_t i = 0; i < dy.shape[2]; ++i)
        for (int64_t j = 0; j < dy.shape[3]; ++j) g.dbias[co] += dy.at(n, co, i, j);
  return g;
}

}  // namespace convnet::ref
