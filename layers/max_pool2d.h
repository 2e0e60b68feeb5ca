// 2-D max pooling (torch.nn.MaxPool2d, dilation 1), square kernel, symmetric
// padding that never wins the max (acts as -inf).
//
// Shapes:
//   x  (N, C, H, W)                options.layout, as are y, dy, dx
//   y  (N, C, H_out, W_out)        H_out = (H + 2 * padding - K) / stride + 1, rounded
//                                  down, or up with ceil_mode (Caffe's pooling; see
//                                  window_output_size in layers/window.h)
//
// Construction requires 0 <= padding <= K / 2 (as PyTorch), so every window
// holds at least one input element.
//
// Gradients (see layers/layer.h): dx overwrites or accumulates as dx_mode
// says; each dy element goes to the input element that was the window's max.
//
// State: a training forward records where each max came from in a workspace
// the layer owns (allocated once, at construction). backward() routes dy
// through the workspace of the LAST training forward, so call it after the
// training forward of the same batch; an inference forward leaves the
// workspace untouched. backward() before any training forward throws.
#pragma once

#include <memory>
#include <string>

#include "layers/layer.h"
#include "layers/reference.h"
#include "layers/window.h"

namespace convnet {

struct MaxPool2dOptions {
  // No defaults for the window: PyTorch's stride defaults to the kernel, so
  // both must be given explicitly (a 0 is rejected at construction).
  int64_t kernel = 0;
  int64_t stride = 0;
  int64_t padding = 0;
  // Round the output extent up (torch's ceil_mode=True; Caffe always does):
  // the last window may overhang the input on the right.
  bool ceil_mode = false;
  Layout layout = Layout::nchw;  // of x, y, dy and dx
};

class MaxPool2d {
 public:
  // Validates the wiring and builds the backend's primitives for this shape.
  static std::unique_ptr<MaxPool2d> create(Context& context, std::string name,
                                           const MaxPool2dOptions& options,
                                           const Shape& input_shape);
  virtual ~MaxPool2d() = default;

  const std::string& name() const { return name_; }
  const MaxPool2dOptions& options() const { return options_; }
  const Shape& input_shape() const { return input_shape_; }
  const Shape& output_shape() const { return output_shape_; }

  // y = max over each window of x; Mode::training also records the argmax for backward.
  void forward(Mode mode, const Tensor& x, const Tensor& y);
  // dx (per dx_mode) = dy scattered to the argmax of the last training forward.
  void backward(const Tensor& dy, const Tensor& dx, GradMode dx_mode);

 protected:
  MaxPool2d(std::string name, const MaxPool2dOptions& options, const Shape& input_shape);
  virtual void forward_impl(Mode mode, const Tensor& x, const Tensor& y) = 0;
  virtual void backward_impl(const Tensor& dy, const Tensor& dx, GradMode dx_mode) = 0;

 private:
  std::string name_;
  MaxPool2dOptions options_;
  Shape input_shape_;   // (N, C, H, W)
  Shape output_shape_;  // (N, C, H_out, W_out)
  bool has_training_forward_ = false;
};

std::unique_ptr<MaxPool2d> make_max_pool2d_onednn(Context& context, std::string name,
                                                  const MaxPool2dOptions& options,
                                                  const Shape& input_shape);
// The GPU backend (builds with CUDA only).
std::unique_ptr<MaxPool2d> make_max_pool2d_cuda(Context& context, std::string name,
                                                const MaxPool2dOptions& options,
                                                const Shape& input_shape);

namespace ref {
Array max_pool2d_forward(const MaxPool2dOptions& options, const Array& x);
// dx: each dy element added to its window's argmax in x (the first one on ties).
Array max_pool2d_backward(const MaxPool2dOptions& options, const Array& x, const Array& dy);
}  // namespace ref

}  // namespace convnet
