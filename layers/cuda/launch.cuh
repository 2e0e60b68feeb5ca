// What every GPU kernel file of layers/cuda/ shares: the launch macro, a
// grid-stride loop over n elements, a block-wide sum and the dispatch on the
// activations' DType (float, __nv_bfloat16, __half). The arithmetic of the
// kernels is in kernel_math.h. Each <layer>_cuda.cu file holds that layer's
// kernels, launchers and (not under CONVNET_CUDA_ON_HOST) its layer class;
// tests/cuda_on_host compiles the kernel parts as host C++ and runs them on
// the CPU against double-precision loops.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>

#include "core/cuda/check.h"
#include "core/dtype.h"
#include "core/error.h"
#include "layers/cuda/kernel_math.h"

// CONVNET_LAUNCH(name, kernel, grid, block, stream, args...) is
// kernel<<<grid, block, 0, stream>>>(args...) with a launch check naming
// `name`. Compiled by a host compiler with CONVNET_CUDA_ON_HOST (the test
// harness tests/cuda_on_host), it runs the kernel on the host instead.
// CONVNET_SHARED(type, name, extents) declares shared memory: __shared__
// type name extents (on the host, poisoned function statics).
#ifdef CONVNET_CUDA_ON_HOST
#define CONVNET_SHARED(type, name, ...) CONVNET_ON_HOST_SHARED(type, name, __VA_ARGS__)
#define CONVNET_LAUNCH(name, kernel, grid, block, stream, ...) \
  ((void)(stream), ::convnet::cuda_on_host::launch(name, grid, block, [&] { kernel(__VA_ARGS__); }))
#else
#define CONVNET_SHARED(type, name, ...) __shared__ type name __VA_ARGS__
#define CONVNET_LAUNCH(name, kernel, grid, block, stream, ...) \
  do {                                                         \
    kernel<<<grid, block, 0, stream>>>(__VA_ARGS__);           \
    CONVNET_CUDA_LAUNCHED(name);                               \
  } while (0)
#endif

namespace convnet::cuda {

inline constexpr int kThreads = 256;

// Blocks for a grid-stride loop over n elements (capped; the loop covers the rest).
inline unsigned blocks_for(int64_t n) {
  return static_cast<unsigned>(
      std::max<int64_t>(1, std::min<int64_t>((n + kThreads - 1) / kThreads, 65535 * 8)));
}

template <typename F>
__global__ void for_each_kernel(int64_t n, F f) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    f(i);
}

// f(i) for i in [0, n) on `stream`.
template <typename F>
void for_each(const char* name, int64_t n, cudaStream_t stream, F f) {
  if (n <= 0) return;
  CONVNET_LAUNCH(name, for_each_kernel, blocks_for(n), kThreads, stream, n, f);
}

// Sum over the block (blockDim.x == kThreads); the result is valid in thread 0.
__device__ inline float block_sum(float value) {
  CONVNET_SHARED(float, partial, [kThreads / 32]);
  for (int offset = 16; offset > 0; offset /= 2)
    value += __shfl_down_sync(0xffffffffu, value, offset);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) partial[warp] = value;
  __syncthreads();
  value = threadIdx.x < kThreads / 32 ? partial[threadIdx.x] : 0.0f;
  if (warp == 0)
    for (int offset = 16; offset > 0; offset /= 2)
      value += __shfl_down_sync(0xffffffffu, value, offset);
  __syncthreads();  // partial may be reused by a following call
  return value;
}

// Calls fn(T{}) with T the C++ type of `dtype`.
template <typename Fn>
void with_type(DType dtype, Fn fn) {
  switch (dtype) {
    case DType::f32:
      return fn(float{});
    case DType::bf16:
      return fn(__nv_bfloat16{});
    case DType::f16:
      return fn(__half{});
  }
  CONVNET_CHECK(false, "unknown element type");
}

template <typename T>
const T* as(const void* p) {
  return static_cast<const T*>(p);
}
template <typename T>
T* as(void* p) {
  return static_cast<T*>(p);
}

}  // namespace convnet::cuda
