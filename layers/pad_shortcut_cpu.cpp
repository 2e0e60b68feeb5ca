// PadShortcut on the CPU: loops over the layout, OpenMP over (N, channel
// blocks). B = channel_block(layout) channels share a pixel (B = 1 for
// nchw); output lane l of block cb holds input channel cb * B + l - pad,
// which may lie in another block of x than its neighbours. Channels-last nhwc
// is one block of all channels per pixel (B = C, different for x and y), so
// it has loops of its own over pixels. Elements are f32,
// or bf16 under the CPU's mixed precision (the same loops: copies and sums).
#include <algorithm>

#include "core/bf16.h"
#include "layers/pad_shortcut.h"

namespace convnet {
namespace {

class PadShortcutCpu final : public PadShortcut {
 public:
  PadShortcutCpu(std::string name, const Shape& in, const Shape& out, int64_t stride, Layout layout)
      : PadShortcut(std::move(name), in, out, stride, layout), block_(channel_block(layout)) {}

 private:
  void forward_impl(const Tensor& x, const Tensor& y) override {
    with_host_type(x.dtype(), [&](auto type) {
      if (layout() == Layout::nhwc) return forward_nhwc<decltype(type)>(x, y);
      forward_in<decltype(type)>(x, y);
    });
  }
  void backward_impl(const Tensor& dy, const Tensor& dx, GradMode dx_mode) override {
    const bool accumulate = dx_mode == GradMode::accumulate;
    with_host_type(dy.dtype(), [&](auto type) {
      if (layout() == Layout::nhwc) return backward_nhwc<decltype(type)>(dy, dx, accumulate);
      backward_in<decltype(type)>(dy, dx, accumulate);
    });
  }
  // Channels-last: output pixel (b, i, j) holds zeros, then input pixel
  // (b, i * s, j * s)'s channels at [pad, pad + C_in).
  template <typename T>
  void forward_nhwc(const Tensor& x, const Tensor& y) const {
    const Shape &in = input_shape(), &out = output_shape();
    const int64_t s = stride(), pad = this->pad();
    const T* xp = x.data<T>();
    T* yp = y.data<T>();
#pragma omp parallel for collapse(2)
    for (int64_t b = 0; b < out[0]; ++b)
      for (int64_t i = 0; i < out[2]; ++i)
        for (int64_t j = 0; j < out[3]; ++j) {
          T* row = yp + ((b * out[2] + i) * out[3] + j) * out[1];
          const T* source = xp + ((b * in[2] + i * s) * in[3] + j * s) * in[1];
          std::fill(row, row + out[1], from_f32<T>(0.0f));
          std::copy(source, source + in[1], row + pad);
        }
  }
  template <typename T>
  void backward_nhwc(const Tensor& dy, const Tensor& dx, bool accumulate) const {
    const Shape &in = input_shape(), &out = output_shape();
    const int64_t s = stride(), pad = this->pad();
    const T* dyp = dy.data<T>();
    T* dxp = dx.data<T>();
    if (!accumulate) std::fill(dxp, dxp + in.numel(), from_f32<T>(0.0f));
#pragma omp parallel for collapse(2)
    for (int64_t b = 0; b < out[0]; ++b)
      for (int64_t i = 0; i < out[2]; ++i)
        for (int64_t j = 0; j < out[3]; ++j) {
          const T* row = dyp + ((b * out[2] + i) * out[3] + j) * out[1] + pad;
          T* target = dxp + ((b * in[2] + i * s) * in[3] + j * s) * in[1];
          for (int64_t c = 0; c < in[1]; ++c)
            target[c] = from_f32<T>(to_f32(target[c]) + to_f32(row[c]));
        }
  }
  // T: the element type of x, y and their gradients.
  template <typename T>
  void forward_in(const Tensor& x, const Tensor& y) const {
    const Shape &in = input_shape(), &out = output_shape();
    const int64_t B = block_, s = stride(), pad = this->pad(), out_blocks = blocks(out);
    const int64_t h = out[2], w = out[3];
    const T* xp = x.data<T>();
    T* yp = y.data<T>();
#pragma omp parallel for collapse(2)
    for (int64_t b = 0; b < out[0]; ++b)
      for (int64_t cb = 0; cb < out_blocks; ++cb) {
        T* yb = yp + (b * out_blocks + cb) * h * w * B;
        std::fill(yb, yb + h * w * B, from_f32<T>(0.0f));
        for (int64_t lane = 0; lane < B; ++lane) {
          const int64_t c = cb * B + lane - pad;
          if (c < 0 || c >= in[1]) continue;
          const T* xc = xp + offset(in, b, c);
          for (int64_t i = 0; i < h; ++i)
            for (int64_t j = 0; j < w; ++j)
              yb[(i * w + j) * B + lane] = xc[(i * s * in[3] + j * s) * B];
        }
      }
  }

  template <typename T>
  void backward_in(const Tensor& dy, const Tensor& dx, bool accumulate) const {
    const Shape &in = input_shape(), &out = output_shape();
    const int64_t B = block_, s = stride(), pad = this->pad(), in_blocks = blocks(in);
    const int64_t h = out[2], w = out[3];
    const T* dyp = dy.data<T>();
    T* dxp = dx.data<T>();
#pragma omp parallel for collapse(2)
    for (int64_t b = 0; b < in[0]; ++b)
      for (int64_t cb = 0; cb < in_blocks; ++cb) {
        T* xb = dxp + (b * in_blocks + cb) * in[2] * in[3] * B;
        if (!accumulate) std::fill(xb, xb + in[2] * in[3] * B, from_f32<T>(0.0f));
        for (int64_t lane = 0; lane < B && cb * B + lane < in[1]; ++lane) {
          const T* yc = dyp + offset(out, b, cb * B + lane + pad);
          for (int64_t i = 0; i < h; ++i)
            for (int64_t j = 0; j < w; ++j) {
              T& target = xb[(i * s * in[3] + j * s) * B + lane];
              target = from_f32<T>(to_f32(target) + to_f32(yc[(i * w + j) * B]));
            }
        }
      }
  }

  int64_t blocks(const Shape& shape) const { return (shape[1] + block_ - 1) / block_; }
  // The offset of element (b, c, 0, 0) of a tensor of `shape`; pixel p of the
  // same channel is p * block_ further.
  int64_t offset(const Shape& shape, int64_t b, int64_t c) const {
    return ((b * blocks(shape) + c / block_) * shape[2] * shape[3]) * block_ + c % block_;
  }

  int64_t block_;  // channels per pixel group: 1, 8 or 16
};

}  // namespace

std::unique_ptr<PadShortcut> make_pad_shortcut_cpu(Context&, std::string name,
                                                   const Shape& input_shape,
                                                   const Shape& output_shape, int64_t stride,
                                                   Layout layout) {
  return std::make_unique<PadShortcutCpu>(std::move(name), input_shape, output_shape, stride,
                                          layout);
}

}  // namespace convnet
