// Runs convnet's own CUDA kernels (layers/cuda/kernels.cu) on the host, so
// that their block-level logic (shared memory, __syncthreads, warp shuffles,
// grid-stride loops, per-block partial sums) is tested on machines without a
// GPU (CI). It is a test harness, not a backend: cuDNN, cuBLAS and NCCL are
// not involved, and timing, memory coalescing and real concurrency are not
// modelled. The GPU tests (tests/gpu) remain the test of the GPU backend.
//
// Model: a launch runs its blocks one after another; the threads of a block
// are fibers (ucontext) that switch only at barriers. __syncthreads() waits
// for every live thread of the block; __shfl_down_sync waits for every lane
// of the warp (warps are 32 consecutive linear thread indices, as on the
// GPU). __shared__ variables are function statics, shared by the block's
// threads. A barrier that cannot complete (threads waiting at different
// barriers, a shuffle with exited lanes) throws convnet::Error instead of
// hanging. set_order(reverse) runs blocks and, between barriers, threads in
// reverse order: a result that differs between the two orders reveals a
// missing barrier (a read of shared memory before its writer ran).
//
// Include this before kernels.cu, compiled with a host compiler and
// CONVNET_CUDA_ON_HOST defined (tests/cuda_on_host/kernels_on_host.cpp).
#pragma once

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <cmath>
#include <cstdint>
#include <functional>

namespace convnet::cuda_on_host {

enum class Order { forward, reverse };
// The order of blocks, and of ready threads between barriers (default forward).
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
// Launches since the process started (tests check that work was launched).
int64_t launch_count();

void sync_threads();
float shuffle_down(unsigned mask, float value, unsigned delta);

}  // namespace convnet::cuda_on_host

#define threadIdx (::convnet::cuda_on_host::builtins().thread)
#define blockIdx (::convnet::cuda_on_host::builtins().block)
#define blockDim (::convnet::cuda_on_host::builtins().block_dim)
#define gridDim (::convnet::cuda_on_host::builtins().grid_dim)
#define __syncthreads() ::convnet::cuda_on_host::sync_threads()
#define __shfl_down_sync(mask, value, delta) \
  ::convnet::cuda_on_host::shuffle_down(mask, value, delta)
#undef __shared__
#define __shared__ static

inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
