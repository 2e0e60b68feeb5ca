// Runs convnet's own CUDA kernels (the kernel parts of layers/cuda/*.cu) on the host, so
// that their block-level logic (shared memory, __syncthreads, warp shuffles,
// grid-stride loops, per-block partial sums) is tested on machines without a
// GPU (CI). It is a test harness, not a backend: cuDNN, cuBLAS and NCCL are
// not involved, and timing, memory coalescing and real concurrency are not
// modelled. The GPU tests (tests/gpu) remain the test of the GPU backend.
//
// Model: a launch runs its blocks one after another; the threads of a block
// are fibers (Boost.Context) that switch only at barriers. __syncthreads()
// waits for every live thread of the block; __shfl_down_sync waits for every
// live lane of the warp (warps are 32 consecutive linear thread indices, as
// on the GPU), and reading a lane that has exited or that a partial warp
// lacks is an error. Shared memory (CONVNET_SHARED) is function statics shared
// by the block's threads, filled with 0xFF bytes (NaN, -1) before every block
// and marked undefined for valgrind's memcheck. Threads waiting at different barriers
// throw convnet::Error instead of hanging.
// Scheduling orders (set_order), to expose missing barriers:
//   forward      blocks, and ready threads between barriers, in index order;
//   reverse      both in reverse: a read of shared memory before its writer ran;
//   warp_greedy  blocks in reverse, each warp (last first) runs as far as it
//                can alone: shared memory overwritten before another warp read it.
//
#pragma once

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <type_traits>

namespace convnet::cuda_on_host {

enum class Order { forward, reverse, warp_greedy };
// The scheduling order of the launches that follow (default forward).
void set_order(Order order);

struct Builtins {
  uint3 thread, block;
  dim3 block_dim, grid_dim;
};
// The built-in variables of the thread that is running.
const Builtins& builtins();

// Runs body once for every thread of the grid (the kernel call with its
// arguments bound); returns when all have finished. `name` goes into errors.
void launch(const char* name, dim3 grid, dim3 block, const std::function<void()>& body);

// Registers a __shared__ variable (a function static here): poisoned at
// once and before every block.
struct SharedMemory {
  SharedMemory(void* data, size_t bytes);
};

void sync_threads();
// The value (up to 8 bytes) of lane + delta of the caller's warp.
uint64_t shuffle_bits(unsigned mask, uint64_t bits, unsigned delta);
template <typename T>
T shuffle_down(unsigned mask, T value, unsigned delta) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= sizeof(uint64_t));
  uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof(T));
  bits = shuffle_bits(mask, bits, delta);
  T result;
  std::memcpy(&result, &bits, sizeof(T));
  return result;
}

}  // namespace convnet::cuda_on_host

#define threadIdx (::convnet::cuda_on_host::builtins().thread)
#define blockIdx (::convnet::cuda_on_host::builtins().block)
#define blockDim (::convnet::cuda_on_host::builtins().block_dim)
#define gridDim (::convnet::cuda_on_host::builtins().grid_dim)
#define __syncthreads() ::convnet::cuda_on_host::sync_threads()
#define __shfl_down_sync(mask, value, delta) \
  ::convnet::cuda_on_host::shuffle_down(mask, value, delta)
// Shared memory is declared with CONVNET_SHARED(type, name, extents) in
// layers/cuda/launch.cuh; here a plain __shared__ does not compile.
#undef __shared__
#define __shared__ use_CONVNET_SHARED_for_shared_memory
#define CONVNET_ON_HOST_SHARED(type, name, ...) \
  static type name __VA_ARGS__;                 \
  static const ::convnet::cuda_on_host::SharedMemory name##_on_host(&name, sizeof(name))

inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
