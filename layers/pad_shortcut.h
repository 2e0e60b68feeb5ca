// PadShortcut: the option A shortcut of the CIFAR ResNets (He et al. 2015,
// sec. 4.2): the subsampled input between zero channels, no parameters.
//
//   y[n, pad + c, i, j] = x[n, c, i * stride, j * stride]   (0 <= c < C)
//   y[n, k, i, j] = 0 for the pad channels on each side, pad = (C_out - C) / 2
// Backward: dx[n, c, i * stride, j * stride] = dy[n, pad + c, i, j], zero at
// the pixels no output samples; overwritten or accumulated per GradMode.
//
// Shapes: x (N, C, H, W), y (N, C_out, ceil(H / stride), ceil(W / stride)),
// C_out - C even and >= 0. Layouts: nchw and the CPU's blocked nchw8c /
// nchw16c (a block of y holds channels c - pad that may span two blocks of x,
// since pad need not be a multiple of the block), nchw and nhwc on the GPU.
#pragma once

#include <memory>
#include <string>

#include "layers/layer.h"
#include "layers/reference.h"

namespace convnet {

class PadShortcut {
 public:
  static std::unique_ptr<PadShortcut> create(Context& context, std::string name,
                                             const Shape& input_shape, const Shape& output_shape,
                                             int64_t stride, Layout layout);
  virtual ~PadShortcut() = default;
  PadShortcut(const PadShortcut&) = delete;
  PadShortcut& operator=(const PadShortcut&) = delete;

  const std::string& name() const { return name_; }
  const Shape& input_shape() const { return input_shape_; }
  const Shape& output_shape() const { return output_shape_; }
  int64_t stride() const { return stride_; }
  int64_t pad() const { return (output_shape_[1] - input_shape_[1]) / 2; }
  Layout layout() const { return layout_; }

  void forward(const Tensor& x, const Tensor& y);
  void backward(const Tensor& dy, const Tensor& dx, GradMode dx_mode);

 protected:
  PadShortcut(std::string name, const Shape& input_shape, const Shape& output_shape, int64_t stride,
              Layout layout);
  virtual void forward_impl(const Tensor& x, const Tensor& y) = 0;
  virtual void backward_impl(const Tensor& dy, const Tensor& dx, GradMode dx_mode) = 0;

 private:
  std::string name_;
  Shape input_shape_, output_shape_;  // (N, C, H, W), (N, C_out, H_out, W_out)
  int64_t stride_;
  Layout layout_;
};

// The CPU backend: loops over the (blocked) layout, OpenMP over (N, blocks).
std::unique_ptr<PadShortcut> make_pad_shortcut_cpu(Context& context, std::string name,
                                                   const Shape& input_shape,
                                                   const Shape& output_shape, int64_t stride,
                                                   Layout layout);
// The GPU backend (builds with CUDA only): strided copies.
std::unique_ptr<PadShortcut> make_pad_shortcut_cuda(Context& context, std::string name,
                                                    const Shape& input_shape,
                                                    const Shape& output_shape, int64_t stride,
                                                    Layout layout);

namespace ref {
Array pad_shortcut_forward(const Array& x, const Shape& output_shape, int64_t stride);
// dx for dy (overwrite semantics).
Array pad_shortcut_backward(const Array& dy, const Shape& input_shape, int64_t stride);
}  // namespace ref

}  // namespace convnet
