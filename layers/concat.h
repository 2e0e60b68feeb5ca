// Channel concatenation of K inputs, as torch.cat(inputs, dim=1): the
// plain, copying concat (DenseNet's memory-efficient variant instead writes
// each layer's output straight into a channel slice of one shared buffer).
//
// Shapes:
//   inputs[k], dinputs[k]   (N, C_k, H, W)          contiguous; equal N, H, W
//   y                       (N, sum_k C_k, H, W)    laid out as options.output_strides says
//   dy                      (N, sum_k C_k, H, W)    any strides with unit W stride
//
// On the CPU the tensors may instead all be in a blocked layout (nchw8c or
// nchw16c, options.layout; dense, no output strides), when every C_k is a
// multiple of the block: each input is then a whole number of channel blocks
// of y (BN-Inception's branches).
//
// The output may be a strided view: with options.output_strides set to the
// strides of a larger (N, C_total, H, W) buffer, y can be a channel slice
// (Tensor::slice(1, ...)) of that buffer, and forward writes only y's
// channels. The layout is fixed at construction because the oneDNN primitive
// is built for it; forward checks that y has exactly those strides.
//
// Gradients (see layers/layer.h): dinputs[k] receives the channel slice k of
// dy, overwriting or accumulating as dinput_modes[k] says; an undefined
// dinputs[k] is skipped (an input that needs no gradient).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "layers/layer.h"
#include "layers/reference.h"

namespace convnet {

struct ConcatOptions {
  // Strides of y in elements, (N, C, H, W) order; empty means contiguous. They
  // must describe a non-overlapping (N, C, H, W)-ordered layout with unit W
  // stride, such as the strides of a larger buffer y is a channel slice of.
  std::vector<int64_t> output_strides;
  // nchw (with output_strides as above), or on the CPU nchw8c / nchw16c for
  // inputs, y, dy and dinputs alike.
  Layout layout = Layout::nchw;
};

class Concat {
 public:
  // Validates the input shapes (at least one; rank 4, every extent > 0, equal
  // N, H, W) and the output layout, and builds the backend's primitive.
  static std::unique_ptr<Concat> create(Context& context, std::string name,
                                        const ConcatOptions& options,
                                        const std::vector<Shape>& input_shapes);
  virtual ~Concat() = default;

  const std::string& name() const { return name_; }
  const ConcatOptions& options() const { return options_; }
  const std::vector<Shape>& input_shapes() const { return input_shapes_; }
  const Shape& output_shape() const { return output_shape_; }
  // options.output_strides, or the contiguous strides of output_shape().
  const std::vector<int64_t>& output_strides() const { return output_strides_; }

  // y = cat(inputs, channels).
  void forward(const std::vector<Tensor>& inputs, const Tensor& y);
  // dinputs[k] (per dinput_modes[k]) = dy[:, offset_k : offset_k + C_k].
  void backward(const Tensor& dy, const std::vector<Tensor>& dinputs,
                const std::vector<GradMode>& dinput_modes);

 protected:
  Concat(std::string name, const ConcatOptions& options, const std::vector<Shape>& input_shapes);
  virtual void forward_impl(const std::vector<Tensor>& inputs, const Tensor& y) = 0;
  virtual void backward_impl(const Tensor& dy, const std::vector<Tensor>& dinputs,
                             const std::vector<GradMode>& dinput_modes) = 0;

 private:
  std::string name_;
  ConcatOptions options_;
  std::vector<Shape> input_shapes_;      // (N, C_k, H, W) each
  Shape output_shape_;                   // (N, sum_k C_k, H, W)
  std::vector<int64_t> output_strides_;  // of y, in elements
};

std::unique_ptr<Concat> make_concat_onednn(Context& context, std::string name,
                                           const ConcatOptions& options,
                                           const std::vector<Shape>& input_shapes);
// The GPU backend (builds with CUDA only).
std::unique_ptr<Concat> make_concat_cuda(Context& context, std::string name,
                                         const ConcatOptions& options,
                                         const std::vector<Shape>& input_shapes);

namespace ref {
Array concat_forward(const std::vector<Array>& inputs);
// The channel slices of dy, one per input shape.
std::vector<Array> concat_backward(const std::vector<Shape>& input_shapes, const Array& dy);
}  // namespace ref

}  // namespace convnet
