#include "core/cuda/check.h"
#include "core/cuda/runtime.h"

namespace convnet {
namespace {
thread_local cudaStream_t this_thread_stream = nullptr;
}  // namespace

GpuRuntime::GpuRuntime(int device_index) : device(device_index) {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  CONVNET_CHECK(status == cudaSuccess, "no usable CUDA device: ", cudaGetErrorString(status));
  CONVNET_CHECK(device_index >= 0 && device_index < count, "CUDA device ", device_index,
                " does not exist: this process sees ", count, " device(s)");
  CONVNET_CUDA(cudaSetDevice(device));
  CONVNET_CUDA(cudaGetDeviceProperties(&properties, device));
  try {  // a failure (a cuDNN sub-library missing, say) releases what was made
    CONVNET_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    CONVNET_CUDNN(cudnnCreate(&cudnn));
    CONVNET_CUDNN(cudnnSetStream(cudnn, stream));
    CONVNET_CUBLAS(cublasCreate(&cublas));
    CONVNET_CUBLAS(cublasSetStream(cublas, stream));
    CONVNET_CUDA(cudaMalloc(&cublas_workspace, kCublasWorkspaceBytes));
    CONVNET_CUBLAS(cublasSetWorkspace(cublas, cublas_workspace, kCublasWorkspaceBytes));
  } catch (...) {
    release();
    throw;
  }
  this_thread_stream = stream;
}

GpuRuntime::~GpuRuntime() { release(); }

void GpuRuntime::release() noexcept {
  if (this_thread_stream == stream) this_thread_stream = nullptr;
  if (cublas != nullptr) cublasDestroy(cublas);
  if (cublas_workspace != nullptr) cudaFree(cublas_workspace);
  if (cudnn != nullptr) cudnnDestroy(cudnn);
  if (stream != nullptr) cudaStreamDestroy(stream);
  cublas = nullptr;
  cublas_workspace = nullptr;
  cudnn = nullptr;
  stream = nullptr;
}

void GpuRuntime::synchronize() const { CONVNET_CUDA(cudaStreamSynchronize(stream)); }

std::size_t GpuRuntime::device_bytes_in_use() const {
  std::size_t free_bytes = 0, total = 0;
  CONVNET_CUDA(cudaSetDevice(device));
  CONVNET_CUDA(cudaMemGetInfo(&free_bytes, &total));
  return total - free_bytes;
}

void* CudaAllocator::allocate(std::size_t bytes) {
  void* ptr = nullptr;
  CONVNET_CUDA(cudaSetDevice(device_));
  const cudaError_t status = cudaMalloc(&ptr, bytes == 0 ? 256 : bytes);
  if (status != cudaSuccess) {
    cudaGetLastError();  // clear it, so later calls do not report it again
    std::size_t free_bytes = 0, total = 0;
    cudaMemGetInfo(&free_bytes, &total);
    CONVNET_CHECK(false, "out of GPU memory on device ", device_, " allocating ", bytes, " bytes (",
                  in_use_, " in use by convnet, ", free_bytes, " of ", total,
                  " free): ", cudaGetErrorString(status));
  }
  ++count_;
  in_use_ += bytes;
  if (in_use_ > peak_) peak_ = in_use_;
  return ptr;
}

void CudaAllocator::deallocate(void* ptr, std::size_t bytes) noexcept {
  CONVNET_WARN_IF_NOT(cudaFree(ptr) == cudaSuccess, "cudaFree failed on device ", device_);
  in_use_ -= bytes;
}

namespace cuda {

cudaStream_t current_stream() {
  // The legacy default stream would not be ordered with the non-blocking
  // compute stream, so an unset stream is an error, not a fallback.
  CONVNET_CHECK(this_thread_stream != nullptr,
                "GPU work on a thread that has no GPU context (cuda::current_stream)");
  return this_thread_stream;
}

namespace {
bool dense(const Tensor& t) { return t.is_dense(); }
}  // namespace

void copy(const Tensor& dst, const Tensor& src, cudaStream_t stream) {
  CONVNET_CHECK(
      dst.shape() == src.shape() && dst.dtype() == src.dtype() && dst.layout() == src.layout(),
      "cuda::copy: ", src.shape(), " ", to_string(src.dtype()), " into ", dst.shape(), " ",
      to_string(dst.dtype()));
  CONVNET_CHECK(dense(dst) && dense(src), "cuda::copy needs dense tensors");
  const std::size_t bytes = static_cast<std::size_t>(src.numel()) * dtype_size(src.dtype());
  CONVNET_CUDA(cudaMemcpyAsync(dst.raw_data(), src.raw_data(), bytes, cudaMemcpyDefault, stream));
  if (dst.device() == Device::cpu) CONVNET_CUDA(cudaStreamSynchronize(stream));
}

Tensor to_host(const Tensor& tensor, cudaStream_t stream) {
  static CpuAllocator host;
  Tensor out = Tensor::empty(tensor.shape(), host, tensor.dtype(), tensor.layout());
  copy(out, tensor, stream);
  return out;
}

void zero(const Tensor& tensor, cudaStream_t stream) {
  CONVNET_CHECK(dense(tensor), "cuda::zero needs a dense tensor");
  CONVNET_CUDA(cudaMemsetAsync(
      tensor.raw_data(), 0, static_cast<std::size_t>(tensor.numel()) * dtype_size(tensor.dtype()),
      stream));
}

}  // namespace cuda
}  // namespace convnet
