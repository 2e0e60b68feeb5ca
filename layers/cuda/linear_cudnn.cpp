// Linear on the GPU as a 1x1 cuDNN convolution over (N, in, 1, 1): the same
// algorithm search and workspace as Conv2d, and no cuBLAS dependency (a GPU
// machine's cuBLAS may be another major version than the toolkit here).
#include "layers/conv2d.h"
#include "layers/cuda/cudnn_util.h"
#include "layers/linear.h"

namespace convnet {
namespace {

class LinearCudnn final : public Linear {
 public:
  LinearCudnn(Context& context, std::string name, const LinearOptions& options,
              const Shape& input_shape)
      : Linear(std::move(name), options, input_shape) {
    Conv2dOptions conv;
    conv.in_channels = options.in_features;
    conv.out_channels = options.out_features;
    conv.bias = options.bias;
    conv_ = make_conv2d_cudnn(context, this->name(), conv, as_map(input_shape));
  }

 private:
  static Shape as_map(const Shape& matrix) { return Shape{matrix[0], matrix[1], 1, 1}; }
  static Tensor map_view(const Tensor& t) {
    return t.defined() ? t.reshape(as_map(t.shape())) : Tensor();
  }

  void forward_impl(const Tensor& x, const Tensor& weight, const Tensor& bias,
                    const Tensor& y) override {
    conv_->forward(map_view(x), map_view(weight), bias, map_view(y));
  }
  void backward_impl(const Tensor& x, const Tensor& weight, const Tensor& dy, const Tensor& dx,
                     GradMode dx_mode, const Tensor& dweight, const Tensor& dbias) override {
    conv_->backward(map_view(x), map_view(weight), map_view(dy), map_view(dx), dx_mode,
                    map_view(dweight), dbias);
  }

  std::unique_ptr<Conv2d> conv_;
};

}  // namespace

std::unique_ptr<Linear> make_linear_cudnn(Context& context, std::string name,
                                          const LinearOptions& options, const Shape& input_shape) {
  return std::make_unique<LinearCudnn>(context, std::move(name), options, input_shape);
}

}  // namespace convnet
