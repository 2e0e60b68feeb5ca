// 2-D convolution (cross-correlation, as torch.nn.Conv2d), square kernel,
// symmetric zero padding, optional groups and bias.
//
// Shapes:
//   x      (N, C_in, H, W)                     options.input_layout
//   weight (C_out, C_in / groups, K, K)
//   bias   (C_out)                             only when options.bias
//   y      (N, C_out, H_out, W_out)            H_out = (H + 2 * padding - K) / stride + 1,
//                                              options.output_layout
//
// Gradients (see layers/layer.h): dweight and dbias accumulate; dx overwrites
// or accumulates as dx_mode says, and is skipped when dx is undefined (the
// network's first layer).
#pragma once

#include <memory>
#include <string>

#include "layers/layer.h"
#include "layers/reference.h"
#include "layers/window.h"

namespace convnet {

struct Conv2dOptions {
  int64_t in_channels = 0;
  int64_t out_channels = 0;
  int64_t kernel = 1;
  int64_t stride = 1;
  int64_t padding = 0;
  int64_t groups = 1;
  bool bias = false;
  // Activation layouts: x and dx in input_layout; y and dy in output_layout
  // (nchw8c / nchw16c pad a channel count that is not a multiple of the
  // block; with groups, each group must be whole blocks).
  Layout input_layout = Layout::nchw;
  Layout output_layout = Layout::nchw;
};

class Conv2d {
 public:
  // Validates the wiring and builds the backend's primitives for this shape.
  static std::unique_ptr<Conv2d> create(Context& context, std::string name,
                                        const Conv2dOptions& options, const Shape& input_shape);
  virtual ~Conv2d() = default;

  const std::string& name() const { return name_; }
  const Conv2dOptions& options() const { return options_; }
  const Shape& input_shape() const { return input_shape_; }
  const Shape& output_shape() const { return output_shape_; }
  Shape weight_shape() const;
  Shape bias_shape() const { return Shape{options_.out_channels}; }

  // y = conv(x, weight) + bias; pass an undefined bias when options.bias is false.
  void forward(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& y);
  // dx (per dx_mode) = conv^T(dy, weight); dweight += corr(x, dy); dbias += sum(dy).
  void backward(const Tensor& x, const Tensor& weight, const Tensor& dy, const Tensor& dx,
                GradMode dx_mode, const Tensor& dweight, const Tensor& dbias);

 protected:
  Conv2d(std::string name, const Conv2dOptions& options, const Shape& input_shape);
  virtual void forward_impl(const Tensor& x, const Tensor& weight, const Tensor& bias,
                            const Tensor& y) = 0;
  virtual void backward_impl(const Tensor& x, const Tensor& weight, const Tensor& dy,
                             const Tensor& dx, GradMode dx_mode, const Tensor& dweight,
                             const Tensor& dbias) = 0;

 private:
  std::string name_;
  Conv2dOptions options_;
  Shape input_shape_;   // (N, C_in, H, W)
  Shape output_shape_;  // (N, C_out, H_out, W_out)
};

std::unique_ptr<Conv2d> make_conv2d_onednn(Context& context, std::string name,
                                           const Conv2dOptions& options, const Shape& input_shape);
// The GPU backend (builds with CUDA only).
std::unique_ptr<Conv2d> make_conv2d_cudnn(Context& context, std::string name,
                                          const Conv2dOptions& options, const Shape& input_shape);

namespace ref {
Array conv2d_forward(const Conv2dOptions& options, const Array& x, const Array& weight,
                     const Array* bias);
struct Conv2dGrads {
  Array dx, dweight, dbias;
};
Conv2dGrads conv2d_backward(const Conv2dOptions& options, const Array& x, const Array& weight,
                            const Array& dy);
}  // namespace ref

}  // namespace convnet
