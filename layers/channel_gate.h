// Channel gate of a squeeze-and-excitation block: scales every channel of x by
// a per-sample, per-channel gate sigmoid(s), broadcast over H and W:
//
//   y[n, c, h, w] = x[n, c, h, w] * sigmoid(s[n, c])
//
// s holds the gate LOGITS (the excitation MLP's output before its sigmoid);
// the sigmoid is part of this layer so that its backward is fused here.
//
// Shapes:
//   x, y, dy, dx   (N, C, H, W)   contiguous
//   s, ds          (N, C)         contiguous
//
// In place: forward may be called with y == x, and backward with dx == dy.
//
// Gradients (see layers/layer.h), with g = sigmoid(s):
//   dx[n, c, h, w] = dy[n, c, h, w] * g[n, c]
//   ds[n, c]       = sum_{h, w} (dy * x)[n, c, h, w] * g[n, c] * (1 - g[n, c])
// each overwriting or accumulating as its mode says; an undefined dx or ds is
// skipped. Backward takes forward's x and s (nothing is saved by forward).
#pragma once

#include <memory>
#include <string>

#include "layers/layer.h"
#include "layers/reference.h"

namespace convnet {

class ChannelGate {
 public:
  // Validates that x is (N, C, H, W) with every extent > 0 and s is (N, C),
  // and builds the backend's primitives for these shapes.
  // x, y, dy, dx in `layout` (nchw8c or nchw16c allowed, C a multiple of the block); s and ds are
  // always row-major (N, C).
  static std::unique_ptr<ChannelGate> create(Context& context, std::string name,
                                             const Shape& input_shape, const Shape& gate_shape,
                                             Layout layout = Layout::nchw);
  virtual ~ChannelGate() = default;

  const std::string& name() const { return name_; }
  const Shape& input_shape() const { return input_shape_; }
  const Shape& gate_shape() const { return gate_shape_; }
  const Shape& output_shape() const { return input_shape_; }
  Layout layout() const { return layout_; }

  // y = x * sigmoid(s), broadcast over H, W; y may be x itself.
  void forward(const Tensor& x, const Tensor& s, const Tensor& y);
  // dx (per dx_mode) = dy * sigmoid(s); ds (per ds_mode) = sum_hw(dy * x) * sigmoid'(s).
  void backward(const Tensor& x, const Tensor& s, const Tensor& dy, const Tensor& dx,
                GradMode dx_mode, const Tensor& ds, GradMode ds_mode);

 protected:
  ChannelGate(std::string name, const Shape& input_shape, const Shape& gate_shape, Layout layout);
  virtual void forward_impl(const Tensor& x, const Tensor& s, const Tensor& y) = 0;
  virtual void backward_impl(const Tensor& x, const Tensor& s, const Tensor& dy, const Tensor& dx,
                             GradMode dx_mode, const Tensor& ds, GradMode ds_mode) = 0;

 private:
  std::string name_;
  Shape input_shape_;  // (N, C, H, W)
  Shape gate_shape_;   // (N, C)
  Layout layout_;
};

std::unique_ptr<ChannelGate> make_channel_gate_onednn(Context& context, std::string name,
                                                      const Shape& input_shape,
                                                      const Shape& gate_shape, Layout layout);
// The GPU backend (builds with CUDA only).
std::unique_ptr<ChannelGate> make_channel_gate_cuda(Context& context, std::string name,
                                                    const Shape& input_shape,
                                                    const Shape& gate_shape, Layout layout);

namespace ref {
Array channel_gate_forward(const Array& x, const Array& s);
struct ChannelGateGrads {
  Array dx, ds;
};
ChannelGateGrads channel_gate_backward(const Array& x, const Array& s, const Array& dy);
}  // namespace ref

}  // namespace convnet
