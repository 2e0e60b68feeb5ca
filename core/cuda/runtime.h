// The GPU backend's per-process runtime (one per Context with Backend::cuda):
// the device this rank drives, the stream every layer enqueues on, the cuDNN
// and cuBLAS handles bound to that stream, and the device allocator.
//
// Ordering: layers enqueue work on `stream` and never synchronize the host;
// host code that reads device memory calls copy_to_host (which waits for the
// stream) or synchronize(). Asynchronous errors (an illegal address in a
// kernel) surface at the next synchronizing call as convnet::Error.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <cstddef>
#include <string>

#include "core/allocator.h"
#include "core/tensor.h"

namespace convnet {

struct GpuRuntime {
  // Selects `device` for this thread and creates the stream and handles.
  // Throws naming the device and the visible count when it does not exist.
  explicit GpuRuntime(int device);
  ~GpuRuntime();
  GpuRuntime(const GpuRuntime&) = delete;
  GpuRuntime& operator=(const GpuRuntime&) = delete;

  // Waits for everything enqueued on `stream`; throws on an asynchronous error.
  void synchronize() const;
  // Memory in use on `device` as the driver counts it (every process's
  // allocations, the CUDA context, the libraries'), bytes.
  std::size_t device_bytes_in_use() const;

  int device = 0;
  cudaStream_t stream = nullptr;
  cudnnHandle_t cudnn = nullptr;
  // cuBLAS (fully connected layers) with a workspace of its own, allocated
  // here once, so no GEMM allocates in the steady state.
  cublasHandle_t cublas = nullptr;
  void* cublas_workspace = nullptr;
  static constexpr std::size_t kCublasWorkspaceBytes = std::size_t{32} << 20;
  cudaDeviceProp properties{};

 private:
  void release() noexcept;  // destroys what exists (the destructor, a failed constructor)
};

// cudaMalloc/cudaFree on one device, with usage counters. Allocation happens
// when a net is planned and when scratch grows (the first steps), never in
// the steady state.
class CudaAllocator final : public Allocator {
 public:
  explicit CudaAllocator(int device) : device_(device) {}
  void* allocate(std::size_t bytes) override;
  void deallocate(void* ptr, std::size_t bytes) noexcept override;
  Device device() const override { return Device::cuda; }
  std::size_t bytes_in_use() const override { return in_use_; }
  std::size_t peak_bytes_in_use() const override { return peak_; }
  std::size_t allocation_count() const override { return count_; }

 private:
  int device_;
  std::size_t in_use_ = 0;
  std::size_t peak_ = 0;
  std::size_t count_ = 0;
};

namespace cuda {

// The stream of the GpuRuntime most recently created by this thread (an
// error when there is none, or it was destroyed): helpers without a Context (write_gradient of
// layers/layer.h) enqueue there, in order with the layers.
cudaStream_t current_stream();

// dst = src for tensors of the same shape and dtype, both dense (contiguous),
// on any devices. Enqueued on `stream`; waits for it when dst is host memory.
void copy(const Tensor& dst, const Tensor& src, cudaStream_t stream);
// A host copy of a device (or host) tensor, f32 contiguous.
Tensor to_host(const Tensor& tensor, cudaStream_t stream);
// Sets every byte of a dense device tensor to zero (enqueued on `stream`).
void zero(const Tensor& tensor, cudaStream_t stream);

}  // namespace cuda
}  // namespace convnet
