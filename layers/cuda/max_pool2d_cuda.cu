// MaxPool2d on the GPU. It keeps the argmax of its last training forward
// (one int32 per output element), since backward gets neither x nor y.
// Kernel contracts in kernels.h.
#include "layers/cuda/kernels.h"
#include "layers/cuda/launch.cuh"

namespace convnet::cuda {
namespace {

template <typename T>
void max_pool_forward_t(const T* x, T* y, int32_t* argmax, const Window2d& w, cudaStream_t stream) {
  for_each("max_pool_forward", w.n * w.c * w.out_h * w.out_w, stream,
           [=] __device__(int64_t i) { math::max_pool_forward(i, x, y, argmax, w); });
}

template <typename T>
void max_pool_backward_t(const T* dy, const int32_t* argmax, T* dx, bool accumulate,
                         const Window2d& w, cudaStream_t stream) {
  for_each("max_pool_backward", w.n * w.c * w.h * w.w, stream, [=] __device__(int64_t i) {
    math::max_pool_backward(i, dy, argmax, dx, accumulate, w);
  });
}

}  // namespace

void max_pool_forward(DType t, const void* x, void* y, int32_t* argmax, const Window2d& w,
                      cudaStream_t stream) {
  with_type(t, [&](auto v) {
    using T = decltype(v);
    max_pool_forward_t(as<T>(x), as<T>(y), argmax, w, stream);
  });
}

void max_pool_backward(DType t, const void* dy, const int32_t* argmax, void* dx, bool accumulate,
                       const Window2d& w, cudaStream_t stream) {
  with_type(t, [&](auto v) {
    using T = decltype(v);
    max_pool_backward_t(as<T>(dy), argmax, as<T>(dx), accumulate, w, stream);
  });
}

}  // namespace convnet::cuda

#ifndef CONVNET_CUDA_ON_HOST  // the kernels alone run on the host (tests/cuda_on_host)
#include "layers/cuda/cudnn_util.h"
#include "layers/max_pool2d.h"

namespace convnet {
namespace {

using cuda::act;

class MaxPoolCuda final : public MaxPool2d {
 public:
  MaxPoolCuda(Context& context, std::string name, const MaxPool2dOptions& options,
              const Shape& input_shape)
      : MaxPool2d(std::move(name), options, input_shape), stream_(cuda::stream_of(context)) {
    cuda::require_gpu_layout(this->name(), options.layout);
    // int32 indices stored in an f32-sized buffer
    argmax_ = Tensor::empty(output_shape(), context.allocator());
    window_ = cuda::pool_window(input_shape, output_shape(), options.kernel, options.stride,
                                options.padding, options.layout);
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

}  // namespace

std::unique_ptr<MaxPool2d> make_max_pool2d_cuda(Context& context, std::string name,
                                                const MaxPool2dOptions& options,
                                                const Shape& input_shape) {
  return std::make_unique<MaxPoolCuda>(context, std::move(name), options, input_shape);
}

}  // namespace convnet
#endif  // CONVNET_CUDA_ON_HOST
