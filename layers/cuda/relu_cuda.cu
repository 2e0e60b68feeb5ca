// ReLU on the GPU: y = max(x, 0) and its backward, one grid-stride loop each
// over dense tensors of any layout (nchw or nhwc). Kernel contracts in kernels.h.
#include "layers/cuda/kernels.h"
#include "layers/cuda/launch.cuh"

namespace convnet::cuda {
namespace {

template <typename T>
void relu_forward_t(const T* x, T* y, int64_t n, cudaStream_t stream) {
  for_each("relu_forward", n, stream,
           [=] __device__(int64_t i) { y[i] = T(fmaxf(math::load(x[i]), 0.0f)); });
}

template <typename T>
void relu_backward_t(const T* y, const T* dy, T* dx, int64_t n, bool accumulate,
                     cudaStream_t stream) {
  for_each("relu_backward", n, stream, [=] __device__(int64_t i) {
    math::store(dx + i, math::load(y[i]) > 0.0f ? math::load(dy[i]) : 0.0f, accumulate);
  });
}

}  // namespace

void relu_forward(DType t, const void* x, void* y, int64_t n, cudaStream_t stream) {
  with_type(t, [&](auto v) {
    using T = decltype(v);
    relu_forward_t(as<T>(x), as<T>(y), n, stream);
  });
}

void relu_backward(DType t, const void* y, const void* dy, void* dx, int64_t n, bool accumulate,
                   cudaStream_t stream) {
  with_type(t, [&](auto v) {
    using T = decltype(v);
    relu_backward_t(as<T>(y), as<T>(dy), as<T>(dx), n, accumulate, stream);
  });
}

}  // namespace convnet::cuda

#ifndef CONVNET_CUDA_ON_HOST  // the kernels alone run on the host (tests/cuda_on_host)
#include "layers/cuda/cudnn_util.h"
#include "layers/relu.h"

namespace convnet {
namespace {

using cuda::act;

class ReluCuda final : public Relu {
 public:
  ReluCuda(Context& context, std::string name, const Shape& shape, Layout layout)
      : Relu(std::move(name), shape, layout), stream_(cuda::stream_of(context)) {
    cuda::require_gpu_layout(this->name(), layout);
  }

 private:
  void forward_impl(const Tensor& x, const Tensor& y) override {
    cuda::relu_forward(x.dtype(), act(x), act(y), x.numel(), stream_);
  }
  void backward_impl(const Tensor& y, const Tensor& dy, const Tensor& dx,
                     GradMode dx_mode) override {
    cuda::relu_backward(y.dtype(), act(y), act(dy), act(dx), y.numel(),
                        dx_mode == GradMode::accumulate, stream_);
  }
  cudaStream_t stream_;
};

}  // namespace

std::unique_ptr<Relu> make_relu_cuda(Context& context, std::string name, const Shape& shape,
                                     Layout layout) {
  return std::make_unique<ReluCuda>(context, std::move(name), shape, layout);
}

}  // namespace convnet
#endif  // CONVNET_CUDA_ON_HOST
