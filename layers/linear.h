// Fully connected layer (torch.nn.Linear): y = x weight^T + bias.
//
// Shapes:
//   x      (N, in_features)         contiguous
//   weight (out_features, in_features)
//   bias   (out_features)           only when options.bias
//   y      (N, out_features)
//
// Gradients (see layers/layer.h): dweight and dbias accumulate; dx overwrites
// or accumulates as dx_mode says, and is skipped when dx is undefined.
#pragma once

#include <memory>
#include <string>

#include "layers/layer.h"
#include "layers/reference.h"

namespace convnet {

struct LinearOptions {
  int64_t in_features = 0;
  int64_t out_features = 0;
  bool bias = true;  // as torch.nn.Linear
};

class Linear {
 public:
  // Validates the wiring and builds the backend's primitives for this shape.
  static std::unique_ptr<Linear> create(Context& context, std::string name,
                                        const LinearOptions& options, const Shape& input_shape);
  virtual ~Linear() = default;

  const std::string& name() const { return name_; }
  const LinearOptions& options() const { return options_; }
  const Shape& input_shape() const { return input_shape_; }
  const Shape& output_shape() const { return output_shape_; }
  Shape weight_shape() const { return Shape{options_.out_features, options_.in_features}; }
  Shape bias_shape() const { return Shape{options_.out_features}; }

  // y = x weight^T + bias; pass an undefined bias when options.bias is false.
  void forward(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& y);
  // dx (per dx_mode) = dy weight; dweight += dy^T x; dbias += sum over N of dy.
  void backward(const Tensor& x, const Tensor& weight, const Tensor& dy, const Tensor& dx,
                GradMode dx_mode, const Tensor& dweight, const Tensor& dbias);

 protected:
  Linear(std::string name, const LinearOptions& options, const Shape& input_shape);
  virtual void forward_impl(const Tensor& x, const Tensor& weight, const Tensor& bias,
                            const Tensor& y) = 0;
  virtual void backward_impl(const Tensor& x, const Tensor& weight, const Tensor& dy,
                             const Tensor& dx, GradMode dx_mode, const Tensor& dweight,
                             const Tensor& dbias) = 0;

 private:
  std::string name_;
  LinearOptions options_;
  Shape input_shape_;   // (N, in_features)
  Shape output_shape_;  // (N, out_features)
};

std::unique_ptr<Linear> make_linear_onednn(Context& context, std::string name,
                                           const LinearOptions& options, const Shape& input_shape);
// The GPU backend (builds with CUDA only).
std::unique_ptr<Linear> make_linear_cublas(Context& context, std::string name,
                                           const LinearOptions& options, const Shape& input_shape);

namespace ref {
Array linear_forward(const Array& x, const Array& weight, const Array* bias);
struct LinearGrads {
  Array dx, dweight, dbias;
};
LinearGrads linear_backward(const Array& x, const Array& weight, const Array& dy);
}  // namespace ref

}  // namespace convnet
