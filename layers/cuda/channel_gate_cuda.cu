// ChannelGate on the GPU (the SE block's scaling): y = x * sigmoid(s[n, c]);
// backward gives dx and ds (a sum over H, W per thread). Kernel contracts in kernels.h.
#include "layers/cuda/kernels.h"
#include "layers/cuda/launch.cuh"

namespace convnet::cuda {
namespace {

template <typename T>
void channel_gate_forward_t(const T* x, const T* s, T* y, int64_t n, int64_t c, int64_t hw,
                            bool channels_last, cudaStream_t stream) {
  for_each("channel_gate_forward", n * c * hw, stream, [=] __device__(int64_t i) {
    math::channel_gate_forward(i, x, s, y, c, hw, channels_last);
  });
}

template <typename T>
void channel_gate_backward_t(const T* x, const T* s, const T* dy, T* dx, bool dx_accumulate, T* ds,
                             bool ds_accumulate, int64_t n, int64_t c, int64_t hw,
                             bool channels_last, cudaStream_t stream) {
  for_each("channel_gate_backward", n * c, stream, [=] __device__(int64_t p) {
    math::channel_gate_backward(p, x, s, dy, dx, dx_accumulate, ds, ds_accumulate, c, hw,
                                channels_last);
  });
}

}  // namespace

void channel_gate_forward(DType t, const void* x, const void* s, void* y, int64_t n, int64_t c,
                          int64_t hw, bool channels_last, cudaStream_t stream) {
  with_type(t, [&](auto v) {
    using T = decltype(v);
    channel_gate_forward_t(as<T>(x), as<T>(s), as<T>(y), n, c, hw, channels_last, stream);
  });
}

void channel_gate_backward(DType t, const void* x, const void* s, const void* dy, void* dx,
                           bool dx_accumulate, void* ds, bool ds_accumulate, int64_t n, int64_t c,
                           int64_t hw, bool channels_last, cudaStream_t stream) {
  with_type(t, [&](auto v) {
    using T = decltype(v);
    channel_gate_backward_t(as<T>(x), as<T>(s), as<T>(dy), as<T>(dx), dx_accumulate, as<T>(ds),
                            ds_accumulate, n, c, hw, channels_last, stream);
  });
}

}  // namespace convnet::cuda

#ifndef CONVNET_CUDA_ON_HOST  // the kernels alone run on the host (tests/cuda_on_host)
#include "layers/channel_gate.h"
#include "layers/cuda/cudnn_util.h"

namespace convnet {
namespace {

using cuda::act;

class ChannelGateCuda final : public ChannelGate {
 public:
  ChannelGateCuda(Context& context, std::string name, const Shape& input_shape,
                  const Shape& gate_shape, Layout layout)
      : ChannelGate(std::move(name), input_shape, gate_shape, layout),
        stream_(cuda::stream_of(context)) {
    cuda::require_gpu_layout(this->name(), layout);
  }

 private:
  int64_t n() const { return input_shape()[0]; }
  int64_t c() const { return input_shape()[1]; }
  int64_t hw() const { return input_shape()[2] * input_shape()[3]; }
  bool channels_last() const { return layout() == Layout::nhwc; }
  void forward_impl(const Tensor& x, const Tensor& s, const Tensor& y) override {
    cuda::channel_gate_forward(x.dtype(), act(x), act(s), act(y), n(), c(), hw(), channels_last(),
                               stream_);
  }
  void backward_impl(const Tensor& x, const Tensor& s, const Tensor& dy, const Tensor& dx,
                     GradMode dx_mode, const Tensor& ds, GradMode ds_mode) override {
    cuda::require_dtype(name(), x.dtype(), {&s, &dy, &dx, &ds});
    cuda::channel_gate_backward(
        x.dtype(), act(x), act(s), act(dy), act(dx), dx_mode == GradMode::accumulate, act(ds),
        ds_mode == GradMode::accumulate, n(), c(), hw(), channels_last(), stream_);
  }
  cudaStream_t stream_;
};

}  // namespace

std::unique_ptr<ChannelGate> make_channel_gate_cuda(Context& context, std::string name,
                                                    const Shape& input_shape,
                                                    const Shape& gate_shape, Layout layout) {
  return std::make_unique<ChannelGateCuda>(context, std::move(name), input_shape, gate_shape,
                                           layout);
}

}  // namespace convnet
#endif  // CONVNET_CUDA_ON_HOST
