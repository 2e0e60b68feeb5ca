// Rectified linear unit, y = max(x, 0), elementwise on a tensor of any rank
// (normally (N, C, H, W) or (N, F)).
//
// Shapes:
//   x, y, dy, dx   the layer's shape    contiguous
//
// In place: forward may be called with y == x (the same tensor), which is the
// usual way to apply it after batch norm. Backward therefore reads the OUTPUT
// y, never x: dx = dy where y > 0, else 0 (the subgradient at 0 is 0, as in
// PyTorch). This is exact because y > 0 exactly when x > 0.
//
// Gradients (see layers/layer.h): dx overwrites or accumulates as dx_mode says.
#pragma once

#include <memory>
#include <string>

#include "layers/layer.h"
#include "layers/reference.h"

namespace convnet {

class Relu {
 public:
  // Validates the shape (rank >= 1, every extent > 0) and builds the backend's
  // primitives for it.
  static std::unique_ptr<Relu> create(Context& context, std::string name, const Shape& shape,
                                      Layout layout = Layout::nchw);
  virtual ~Relu() = default;

  const std::string& name() const { return name_; }
  const Shape& input_shape() const { return shape_; }
  const Shape& output_shape() const { return shape_; }
  Layout layout() const { return layout_; }  // of x, y, dy and dx

  // y = max(x, 0); y may be x itself.
  void forward(const Tensor& x, const Tensor& y);
  // dx (per dx_mode) = dy * (y > 0), from the forward's output y.
  void backward(const Tensor& y, const Tensor& dy, const Tensor& dx, GradMode dx_mode);

 protected:
  Relu(std::string name, const Shape& shape, Layout layout);
  virtual void forward_impl(const Tensor& x, const Tensor& y) = 0;
  virtual void backward_impl(const Tensor& y, const Tensor& dy, const Tensor& dx,
                             GradMode dx_mode) = 0;

 private:
  std::string name_;
  Shape shape_;  // any rank, e.g. (N, C, H, W)
  Layout layout_;
};

std::unique_ptr<Relu> make_relu_onednn(Context& context, std::string name, const Shape& shape,
                                       Layout layout);
// The GPU backend (builds with CUDA only).
std::unique_ptr<Relu> make_relu_cuda(Context& context, std::string name, const Shape& shape,
                                     Layout layout);

namespace ref {
Array relu_forward(const Array& x);
// dx = dy * (y > 0).
Array relu_backward(const Array& y, const Array& dy);
}  // namespace ref

}  // namespace convnet
