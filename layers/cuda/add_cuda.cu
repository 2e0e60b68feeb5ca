// Add on the GPU: y = a + b; backward copies dy into each input gradient
// (tensor_kernels.cu). Kernel contracts in kernels.h.
#include "layers/cuda/kernels.h"
#include "layers/cuda/launch.cuh"

namespace convnet::cuda {
namespace {

template <typename T>
void add_t(const T* a, const T* b, T* y, int64_t n, cudaStream_t stream) {
  for_each("add", n, stream,
           [=] __device__(int64_t i) { y[i] = T(math::load(a[i]) + math::load(b[i])); });
}

}  // namespace

void add(DType t, const void* a, const void* b, void* y, int64_t n, cudaStream_t stream) {
  with_type(t, [&](auto v) {
    using T = decltype(v);
    add_t(as<T>(a), as<T>(b), as<T>(y), n, stream);
  });
}

}  // namespace convnet::cuda

#ifndef CONVNET_CUDA_ON_HOST  // the kernels alone run on the host (tests/cuda_on_host)
#include "layers/add.h"
#include "layers/cuda/cudnn_util.h"

namespace convnet {
namespace {

using cuda::act;

class AddCuda final : public Add {
 public:
  AddCuda(Context& context, std::string name, const Shape& a, const Shape& b, Layout layout)
      : Add(std::move(name), a, b, layout), stream_(cuda::stream_of(context)) {
    cuda::require_gpu_layout(this->name(), layout);
  }

 private:
  void forward_impl(const Tensor& a, const Tensor& b, const Tensor& y) override {
    cuda::add(y.dtype(), act(a), act(b), act(y), y.numel(), stream_);
  }
  void backward_impl(const Tensor& dy, const Tensor& da, GradMode da_mode, const Tensor& db,
                     GradMode db_mode) override {
    if (da.defined()) cuda::copy_tensor(da, dy, da_mode == GradMode::accumulate, stream_);
    if (db.defined()) cuda::copy_tensor(db, dy, db_mode == GradMode::accumulate, stream_);
  }
  cudaStream_t stream_;
};

}  // namespace

std::unique_ptr<Add> make_add_cuda(Context& context, std::string name, const Shape& a_shape,
                                   const Shape& b_shape, Layout layout) {
  return std::make_unique<AddCuda>(context, std::move(name), a_shape, b_shape, layout);
}

}  // namespace convnet
#endif  // CONVNET_CUDA_ON_HOST
