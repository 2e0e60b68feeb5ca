// Global average pooling (torch.nn.AdaptiveAvgPool2d(1) followed by flatten):
// the mean of each channel over all spatial positions.
//
// Shapes:
//   x  (N, C, H, W)   contiguous
//   y  (N, C)         the spatial dimensions are dropped, not kept as 1 x 1
//
// Gradients (see layers/layer.h): dx overwrites or accumulates as dx_mode
// says; dx[n, c, h, w] = dy[n, c] / (H * W). The layer keeps no state between
// forward and backward and has no options.
#pragma once

#include <memory>
#include <string>

#include "layers/layer.h"
#include "layers/reference.h"

namespace convnet {

class GlobalAvgPool {
 public:
  // Validates the wiring and builds the backend's primitives for this shape.
  // The input may be blocked (nchw8c, nchw16c); the (N, C) output is always row-major.
  static std::unique_ptr<GlobalAvgPool> create(Context& context, std::string name,
                                               const Shape& input_shape,
                                               Layout input_layout = Layout::nchw);
  virtual ~GlobalAvgPool() = default;

  const std::string& name() const { return name_; }
  const Shape& input_shape() const { return input_shape_; }
  const Shape& output_shape() const { return output_shape_; }
  Layout input_layout() const { return input_layout_; }  // of x and dx

  // y[n, c] = mean over (h, w) of x[n, c, h, w].
  void forward(const Tensor& x, const Tensor& y);
  // dx (per dx_mode) = dy broadcast over (H, W) and divided by H * W.
  void backward(const Tensor& dy, const Tensor& dx, GradMode dx_mode);

 protected:
  GlobalAvgPool(std::string name, const Shape& input_shape, Layout input_layout);
  virtual void forward_impl(const Tensor& x, const Tensor& y) = 0;
  virtual void backward_impl(const Tensor& dy, const Tensor& dx, GradMode dx_mode) = 0;

 private:
  std::string name_;
  Shape input_shape_;   // (N, C, H, W)
  Shape output_shape_;  // (N, C)
  Layout input_layout_;
};

std::unique_ptr<GlobalAvgPool> make_global_avg_pool_onednn(Context& context, std::string name,
                                                           const Shape& input_shape,
                                                           Layout input_layout);
// The GPU backend (builds with CUDA only).
std::unique_ptr<GlobalAvgPool> make_global_avg_pool_cuda(Context& context, std::string name,
                                                         const Shape& input_shape,
                                                         Layout input_layout);

namespace ref {
Array global_avg_pool_forward(const Array& x);
Array global_avg_pool_backward(const Shape& x_shape, const Array& dy);
}  // namespace ref

}  // namespace convnet
