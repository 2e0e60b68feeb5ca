// Elementwise sum of two tensors of the same shape, y = a + b: the join of a
// residual block (the shortcut added to the block's output).
//
// Shapes:
//   a, b, y, dy, da, db   the layer's shape (any rank)   contiguous
//
// In place: forward may be called with y == a (the same tensor), e.g. adding
// the shortcut onto the block's output buffer; y must not be b alone
// (oneDNN computes in place only over its first source).
//
// Gradients (see layers/layer.h): da and db both receive dy, each overwriting
// or accumulating as its mode says; an undefined da or db is skipped. They
// must not overlap dy (a caller that wants dy passed through without a copy
// can simply use dy itself as the branch's gradient).
#pragma once

#include <memory>
#include <string>

#include "layers/layer.h"
#include "layers/reference.h"

namespace convnet {

class Add {
 public:
  // Validates that a and b have the same shape (rank >= 1, every extent > 0)
  // and builds the backend's primitives for it.
  static std::unique_ptr<Add> create(Context& context, std::string name, const Shape& a_shape,
                                     const Shape& b_shape, Layout layout = Layout::nchw);
  virtual ~Add() = default;

  const std::string& name() const { return name_; }
  const Shape& input_shape() const { return shape_; }  // of a and of b
  const Shape& output_shape() const { return shape_; }
  Layout layout() const { return layout_; }  // of every tensor

  // y = a + b; y may be a itself.
  void forward(const Tensor& a, const Tensor& b, const Tensor& y);
  // da (per da_mode) = dy; db (per db_mode) = dy.
  void backward(const Tensor& dy, const Tensor& da, GradMode da_mode, const Tensor& db,
                GradMode db_mode);

 protected:
  Add(std::string name, const Shape& a_shape, const Shape& b_shape, Layout layout);
  virtual void forward_impl(const Tensor& a, const Tensor& b, const Tensor& y) = 0;
  virtual void backward_impl(const Tensor& dy, const Tensor& da, GradMode da_mode, const Tensor& db,
                             GradMode db_mode) = 0;

 private:
  std::string name_;
  Shape shape_;  // any rank, e.g. (N, C, H, W)
  Layout layout_;
};

std::unique_ptr<Add> make_add_onednn(Context& context, std::string name, const Shape& a_shape,
                                     const Shape& b_shape, Layout layout);
// The GPU backend (builds with CUDA only).
std::unique_ptr<Add> make_add_cuda(Context& context, std::string name, const Shape& a_shape,
                                   const Shape& b_shape, Layout layout);

namespace ref {
Array add_forward(const Array& a, const Array& b);
struct AddGrads {
  Array da, db;
};
AddGrads add_backward(const Array& dy);
}  // namespace ref

}  // namespace convnet
