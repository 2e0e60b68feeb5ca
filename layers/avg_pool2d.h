// 2-D average pooling (torch.nn.AvgPool2d with ceil_mode=False), square kernel,
// symmetric zero padding.
//
// Shapes:
//   x  (N, C, H, W)                options.layout (nchw, nchw8c or nchw16c on the CPU,
//                                  nchw or nhwc on the GPU), as are y, dy, dx
//   y  (N, C, H_out, W_out)        H_out = (H + 2 * padding - K) / stride + 1
//
// Each output is the sum of its window's input elements divided by K * K when
// count_include_pad (padding counts as zeros, PyTorch's default), or by the
// number of window elements inside the input otherwise. Construction requires
// 0 <= padding <= K / 2 (as PyTorch), so that count is never 0.
//
// Gradients (see layers/layer.h): dx overwrites or accumulates as dx_mode
// says; each dy element is spread over its window with the forward's divisor.
// The layer keeps no state between forward and backward.
#pragma once

#include <memory>
#include <string>

#include "layers/layer.h"
#include "layers/reference.h"
#include "layers/window.h"

namespace convnet {

struct AvgPool2dOptions {
  // No defaults for the window: PyTorch's stride defaults to the kernel, so
  // both must be given explicitly (a 0 is rejected at construction).
  int64_t kernel = 0;
  int64_t stride = 0;
  int64_t padding = 0;
  bool count_include_pad = true;
  Layout layout = Layout::nchw;  // of x, y, dy and dx
};

class AvgPool2d {
 public:
  // Validates the wiring and builds the backend's primitives for this shape.
  static std::unique_ptr<AvgPool2d> create(Context& context, std::string name,
                                           const AvgPool2dOptions& options,
                                           const Shape& input_shape);
  virtual ~AvgPool2d() = default;

  const std::string& name() const { return name_; }
  const AvgPool2dOptions& options() const { return options_; }
  const Shape& input_shape() const { return input_shape_; }
  const Shape& output_shape() const { return output_shape_; }

  // y = mean over each window of x.
  void forward(const Tensor& x, const Tensor& y);
  // dx (per dx_mode) = dy spread evenly over each window.
  void backward(const Tensor& dy, const Tensor& dx, GradMode dx_mode);

 protected:
  AvgPool2d(std::string name, const AvgPool2dOptions& options, const Shape& input_shape);
  virtual void forward_impl(const Tensor& x, const Tensor& y) = 0;
  virtual void backward_impl(const Tensor& dy, const Tensor& dx, GradMode dx_mode) = 0;

 private:
  std::string name_;
  AvgPool2dOptions options_;
  Shape input_shape_;   // (N, C, H, W)
  Shape output_shape_;  // (N, C, H_out, W_out)
};

std::unique_ptr<AvgPool2d> make_avg_pool2d_onednn(Context& context, std::string name,
                                                  const AvgPool2dOptions& options,
                                                  const Shape& input_shape);
// The GPU backend (builds with CUDA only).
std::unique_ptr<AvgPool2d> make_avg_pool2d_cuda(Context& context, std::string name,
                                                const AvgPool2dOptions& options,
                                                const Shape& input_shape);

namespace ref {
Array avg_pool2d_forward(const AvgPool2dOptions& options, const Array& x);
Array avg_pool2d_backward(const AvgPool2dOptions& options, const Shape& x_shape, const Array& dy);
}  // namespace ref

}  // namespace convnet
