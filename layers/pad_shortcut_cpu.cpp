// PadShortcut on the CPU: loops over the layout, OpenMP over (N, channel
// blocks). B = channel_block(layout) channels share a pixel (B = 1 for
// nchw); output lane l of block cb holds input channel cb * B + l - pad,
// which may lie in another block of x than its neighbours.
#include <algorithm>

#include "layers/pad_shortcut.h"

namespace convnet {
namespace {

class PadShortcutCpu final : public PadShortcut {
 public:
  PadShortcutCpu(std::string name, const Shape& in, const Shape& out, int64_t stride, Layout layout)
      : PadShortcut(std::move(name), in, out, stride, layout), block_(channel_block(layout)) {
    CONVNET_CHECK(layout != Layout::nhwc, "layer ", this->name(),
                  ": nhwc is the GPU's layout; the CPU runs nchw, nchw8c or nchw16c");
  }

 private:
  void forward_impl(const Tensor& x, const Tensor& y) override {
    const Shape &in = input_shape(), &out = output_shape();
    const int64_t B = block_, s = stride(), pad = this->pad(), out_blocks = blocks(out);
    const int64_t h = out[2], w = out[3];
    const float* xp = x.data<float>();
    float* yp = y.data<float>();
#pragma omp parallel for collapse(2)
    for (int64_t b = 0; b < out[0]; ++b)
      for (int64_t cb = 0; cb < out_blocks; ++cb) {
        float* yb = yp + (b * out_blocks + cb) * h * w * B;
        std::fill(yb, yb + h * w * B, 0.0f);
        for (int64_t lane = 0; lane < B; ++lane) {
          const int64_t c = cb * B + lane - pad;
          if (c < 0 || c >= in[1]) continue;
          const float* xc = xp + offset(in, b, c);
          for (int64_t i = 0; i < h; ++i)
            for (int64_t j = 0; j < w; ++j)
              yb[(i * w + j) * B + lane] = xc[(i * s * in[3] + j * s) * B];
        }
      }
  }

  void backward_impl(const Tensor& dy, const Tensor& dx, GradMode dx_mode) override {
    const Shape &in = input_shape(), &out = output_shape();
    const int64_t B = block_, s = stride(), pad = this->pad(), in_blocks = blocks(in);
    const int64_t h = out[2], w = out[3];
    const bool accumulate = dx_mode == GradMode::accumulate;
    const float* dyp = dy.data<float>();
    float* dxp = dx.data<float>();
#pragma omp parallel for collapse(2)
    for (int64_t b = 0; b < in[0]; ++b)
      for (int64_t cb = 0; cb < in_blocks; ++cb) {
        float* xb = dxp + (b * in_blocks + cb) * in[2] * in[3] * B;
        if (!accumulate) std::fill(xb, xb + in[2] * in[3] * B, 0.0f);
        for (int64_t lane = 0; lane < B && cb * B + lane < in[1]; ++lane) {
          const float* yc = dyp + offset(out, b, cb * B + lane + pad);
          for (int64_t i = 0; i < h; ++i)
            for (int64_t j = 0; j < w; ++j)
              xb[(i * s * in[3] + j * s) * B + lane] += yc[(i * w + j) * B];
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
