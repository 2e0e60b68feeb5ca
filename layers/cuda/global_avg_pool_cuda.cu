// GlobalAvgPool on the GPU: the mean over H, W per (n, c), and its backward.
// Kernel contracts in kernels.h.
#include "layers/cuda/kernels.h"
#include "layers/cuda/launch.cuh"

namespace convnet::cuda {
namespace {

template <typename T>
void global_avg_pool_forward_t(const T* x, T* y, int64_t n, int64_t c, int64_t hw,
                               bool channels_last, cudaStream_t stream) {
  for_each("global_avg_pool_forward", n * c, stream, [=] __device__(int64_t p) {
    math::global_avg_pool_forward(p, x, y, c, hw, channels_last);
  });
}

template <typename T>
void global_avg_pool_backward_t(const T* dy, T* dx, int64_t n, int64_t c, int64_t hw,
                                bool channels_last, bool accumulate, cudaStream_t stream) {
  for_each("global_avg_pool_backward", n * c * hw, stream, [=] __device__(int64_t i) {
    math::global_avg_pool_backward(i, dy, dx, c, hw, channels_last, accumulate);
  });
}

}  // namespace

void global_avg_pool_forward(DType t, const void* x, void* y, int64_t n, int64_t c, int64_t hw,
                             bool channels_last, cudaStream_t stream) {
  with_type(t, [&](auto v) {
    using T = decltype(v);
    global_avg_pool_forward_t(as<T>(x), as<T>(y), n, c, hw, channels_last, stream);
  });
}

void global_avg_pool_backward(DType t, const void* dy, void* dx, int64_t n, int64_t c, int64_t hw,
                              bool channels_last, bool accumulate, cudaStream_t stream) {
  with_type(t, [&](auto v) {
    using T = decltype(v);
    global_avg_pool_backward_t(as<T>(dy), as<T>(dx), n, c, hw, channels_last, accumulate, stream);
  });
}

}  // namespace convnet::cuda

#ifndef CONVNET_CUDA_ON_HOST  // the kernels alone run on the host (tests/cuda_on_host)
#include "layers/cuda/cudnn_util.h"
#include "layers/global_avg_pool.h"

namespace convnet {
namespace {

using cuda::act;

class GlobalAvgPoolCuda final : public GlobalAvgPool {
 public:
  GlobalAvgPoolCuda(Context& context, std::string name, const Shape& input_shape, Layout layout)
      : GlobalAvgPool(std::move(name), input_shape, layout), stream_(cuda::stream_of(context)) {
    cuda::require_gpu_layout(this->name(), layout);
  }

 private:
  int64_t n() const { return input_shape()[0]; }
  int64_t c() const { return input_shape()[1]; }
  int64_t hw() const { return input_shape()[2] * input_shape()[3]; }
  bool channels_last() const { return input_layout() == Layout::nhwc; }
  void forward_impl(const Tensor& x, const Tensor& y) override {
    cuda::global_avg_pool_forward(x.dtype(), act(x), act(y), n(), c(), hw(), channels_last(),
                                  stream_);
  }
  void backward_impl(const Tensor& dy, const Tensor& dx, GradMode dx_mode) override {
    cuda::global_avg_pool_backward(dy.dtype(), act(dy), act(dx), n(), c(), hw(), channels_last(),
                                   dx_mode == GradMode::accumulate, stream_);
  }
  cudaStream_t stream_;
};

}  // namespace

std::unique_ptr<GlobalAvgPool> make_global_avg_pool_cuda(Context& context, std::string name,
                                                         const Shape& input_shape,
                                                         Layout input_layout) {
  return std::make_unique<GlobalAvgPoolCuda>(context, std::move(name), input_shape, input_layout);
}

}  // namespace convnet
#endif  // CONVNET_CUDA_ON_HOST
