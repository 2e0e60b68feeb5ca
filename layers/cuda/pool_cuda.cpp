// MaxPool2d and AvgPool2d on the GPU (kernels.h). Max pooling keeps the
// argmax of its last training forward (one int32 per output element), since
// backward gets neither x nor y.
#include "layers/avg_pool2d.h"
#include "layers/cuda/cudnn_util.h"
#include "layers/max_pool2d.h"

namespace convnet {
namespace {

using cuda::act;

cuda::Window2d window(const Shape& in, const Shape& out, int64_t kernel, int64_t stride,
                      int64_t padding, Layout layout) {
  return cuda::Window2d{in[0],  in[1],  in[2],  in[3],   out[2],
                        out[3], kernel, stride, padding, layout == Layout::nhwc};
}

class MaxPoolCuda final : public MaxPool2d {
 public:
  MaxPoolCuda(Context& context, std::string name, const MaxPool2dOptions& options,
              const Shape& input_shape)
      : MaxPool2d(std::move(name), options, input_shape), stream_(cuda::stream_of(context)) {
    cuda::require_gpu_layout(this->name(), options.layout);
    // int32 indices stored in an f32-sized buffer
    argmax_ = Tensor::empty(output_shape(), context.allocator());
    window_ = window(input_shape, output_shape(), options.kernel, options.stride, options.padding,
                     options.layout);
  }

 private:
  int32_t* argmax() const { return static_cast<int32_t*>(argmax_.raw_data()); }
  void forward_impl(Mode mode, const Tensor& x, const Tensor& y) override {
    cuda::max_pool_forward(x.dtype(), act(x), act(y), mode == Mode::training ? argmax() : nullptr,
                           window_, stream_);
  }
  void backward_impl(const Tensor& dy, const Tensor& dx, GradMode dx_mode) override {
    cuda::max_pool_backward(dy.dtype(), act(dy), argmax(), act(dx), dx_mode == GradMode::accumulate,
                            window_, stream_);
  }
  cudaStream_t stream_;
  Tensor argmax_;  // (N, C, H_out, W_out) int32 plane indices, of the last training forward
  cuda::Window2d window_;
};

class AvgPoolCuda final : public AvgPool2d {
 public:
  AvgPoolCuda(Context& context, std::string name, const AvgPool2dOptions& options,
              const Shape& input_shape)
      : AvgPool2d(std::move(name), options, input_shape), stream_(cuda::stream_of(context)) {
    cuda::require_gpu_layout(this->name(), options.layout);
    window_ = window(input_shape, output_shape(), options.kernel, options.stride, options.padding,
                     options.layout);
  }

 private:
  void forward_impl(const Tensor& x, const Tensor& y) override {
    cuda::avg_pool_forward(x.dtype(), act(x), act(y), window_, options().count_include_pad,
                           stream_);
  }
  void backward_impl(const Tensor& dy, const Tensor& dx, GradMode dx_mode) override {
    cuda::avg_pool_backward(dy.dtype(), act(dy), act(dx), dx_mode == GradMode::accumulate, window_,
                            options().count_include_pad, stream_);
  }
  cudaStream_t stream_;
  cuda::Window2d window_;
};

}  // namespace

std::unique_ptr<MaxPool2d> make_max_pool2d_cuda(Context& context, std::string name,
                                                const MaxPool2dOptions& options,
                                                const Shape& input_shape) {
  return std::make_unique<MaxPoolCuda>(context, std::move(name), options, input_shape);
}
std::unique_ptr<AvgPool2d> make_avg_pool2d_cuda(Context& context, std::string name,
                                                const AvgPool2dOptions& options,
                                                const Shape& input_shape) {
  return std::make_unique<AvgPoolCuda>(context, std::move(name), options, input_shape);
}

}  // namespace convnet
