// Kernels over whole tensors that several layers and the optimizer share:
// strided copies (with type conversion), scaling, the non-finite test of
// loss scaling, and per-channel bias add and sums (convolution and linear
// bias). Contracts in kernels.h.
#include "layers/cuda/channel_sums.cuh"
#include "layers/cuda/kernels.h"
#include "layers/cuda/launch.cuh"

namespace convnet::cuda {
namespace {

template <typename D, typename S>
void strided_copy_t(D* dst, const S* src, const Strided4& l, bool accumulate, cudaStream_t stream) {
  const int64_t total = l.shape[0] * l.shape[1] * l.shape[2] * l.shape[3];
  for_each("strided_copy", total, stream,
           [=] __device__(int64_t i) { math::strided_copy(i, dst, src, l, accumulate); });
}

template <typename T>
void add_channel_bias_t(T* y, const float* bias, int64_t n, int64_t c, int64_t hw,
                        bool channels_last, cudaStream_t stream) {
  for_each("add_channel_bias", n * c * hw, stream, [=] __device__(int64_t i) {
    math::store(y + i, bias[math::channel_of(i, c, hw, channels_last)], true);
  });
}

template <typename T>
void scale_copy_t(T* y, const T* x, int64_t n, float factor, bool accumulate, cudaStream_t stream) {
  for_each("scale_copy", n, stream, [=] __device__(int64_t i) {
    math::store(y + i, factor * math::load(x[i]), accumulate);
  });
}

}  // namespace

void strided_copy(DType dst_type, void* dst, DType src_type, const void* src, const Strided4& l,
                  bool accumulate, cudaStream_t stream) {
  with_type(dst_type, [&](auto d) {
    using D = decltype(d);
    with_type(src_type, [&](auto s) {
      using S = decltype(s);
      strided_copy_t(as<D>(dst), as<S>(src), l, accumulate, stream);
    });
  });
}

void scale(float* x, int64_t n, float factor, cudaStream_t stream) {
  for_each("scale", n, stream, [=] __device__(int64_t i) { x[i] *= factor; });
}

void add_channel_bias(DType t, void* y, const float* bias, int64_t n, int64_t c, int64_t hw,
                      bool channels_last, cudaStream_t stream) {
  with_type(t, [&](auto v) {
    using T = decltype(v);
    add_channel_bias_t(as<T>(y), bias, n, c, hw, channels_last, stream);
  });
}

void accumulate_channel_sums(DType t, const void* dy, float* sums, int64_t n, int64_t c, int64_t hw,
                             bool channels_last, cudaStream_t stream) {
  with_type(t, [&](auto v) {
    using T = decltype(v);
    CONVNET_LAUNCH("channel_sums", channel_sums_kernel<T>, static_cast<unsigned>(c), kThreads,
                   stream, as<T>(dy), sums, n, c, hw, channels_last);
  });
}

void scale_copy(DType t, void* y, const void* x, int64_t n, float factor, bool accumulate,
                cudaStream_t stream) {
  with_type(t, [&](auto v) {
    using T = decltype(v);
    scale_copy_t(as<T>(y), as<T>(x), n, factor, accumulate, stream);
  });
}

void flag_nonfinite(const float* x, int64_t n, int32_t* flag, cudaStream_t stream) {
  for_each("flag_nonfinite", n, stream, [=] __device__(int64_t i) {
    if (!isfinite(x[i])) *flag = 1;  // a benign race: every writer stores 1
  });
}

}  // namespace convnet::cuda
