// AvgPool2d on the GPU (PyTorch's count_include_pad either way). Kernel
// contracts in kernels.h.
#include "layers/cuda/kernels.h"
#include "layers/cuda/launch.cuh"

namespace convnet::cuda {
namespace {

template <typename T>
void avg_pool_forward_t(const T* x, T* y, const Window2d& w, bool count_include_pad,
                        cudaStream_t stream) {
  for_each("avg_pool_forward", w.n * w.c * w.out_h * w.out_w, stream,
           [=] __device__(int64_t i) { math::avg_pool_forward(i, x, y, w, count_include_pad); });
}

template <typename T>
void avg_pool_backward_t(const T* dy, T* dx, bool accumulate, const Window2d& w,
                         bool count_include_pad, cudaStream_t stream) {
  for_each("avg_pool_backward", w.n * w.c * w.h * w.w, stream, [=] __device__(int64_t i) {
    math::avg_pool_backward(i, dy, dx, accumulate, w, count_include_pad);
  });
}

}  // namespace

void avg_pool_forward(DType t, const void* x, void* y, const Window2d& w, bool count_include_pad,
                      cudaStream_t stream) {
  with_type(t, [&](auto v) {
    using T = decltype(v);
    avg_pool_forward_t(as<T>(x), as<T>(y), w, count_include_pad, stream);
  });
}

void avg_pool_backward(DType t, const void* dy, void* dx, bool accumulate, const Window2d& w,
                       bool count_include_pad, cudaStream_t stream) {
  with_type(t, [&](auto v) {
    using T = decltype(v);
    avg_pool_backward_t(as<T>(dy), as<T>(dx), accumulate, w, count_include_pad, stream);
  });
}

}  // namespace convnet::cuda

#ifndef CONVNET_CUDA_ON_HOST  // the kernels alone run on the host (tests/cuda_on_host)
#include "layers/avg_pool2d.h"
#include "layers/cuda/cudnn_util.h"

namespace convnet {
namespace {

using cuda::act;

class AvgPoolCuda final : public AvgPool2d {
 public:
  AvgPoolCuda(Context& context, std::string name, const AvgPool2dOptions& options,
              const Shape& input_shape)
      : AvgPool2d(std::move(name), options, input_shape), stream_(cuda::stream_of(context)) {
    cuda::require_gpu_layout(this->name(), options.layout);
    window_ = cuda::pool_window(input_shape, output_shape(), options.kernel, options.stride,
                                options.padding, options.layout);
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

std::unique_ptr<AvgPool2d> make_avg_pool2d_cuda(Context& context, std::string name,
                                                const AvgPool2dOptions& options,
                                                const Shape& input_shape) {
  return std::make_unique<AvgPoolCuda>(context, std::move(name), options, input_shape);
}

}  // namespace convnet
#endif  // CONVNET_CUDA_ON_HOST
