#include "core/context.h"

#include <omp.h>
#include <unistd.h>

#include <algorithm>

#include "core/error.h"
#include "core/onednn.h"

#ifdef CONVNET_HAVE_CUDA
#include "core/cuda/runtime.h"
#else
namespace convnet {
struct GpuRuntime {};  // never created in a build without the GPU backend
}  // namespace convnet
#endif

namespace convnet {

int machine_cpus() {
  const long online = sysconf(_SC_NPROCESSORS_ONLN);
  return online > 0 ? static_cast<int>(online) : 1;
}

void check_thread_count(int threads) {
  CONVNET_CHECK(threads >= 0 && threads <= machine_cpus(), "--threads must lie in [0, ",
                machine_cpus(), "] (this machine has ", machine_cpus(),
                " CPUs; 0: its cores shared by the ranks on it), got ", threads);
}

void check_activation_dtype(const ContextOptions& options) {
  if (options.activation_dtype == DType::f32 || options.backend == Backend::cuda) return;
  CONVNET_CHECK(options.activation_dtype == DType::bf16,
                "f16 activations (--precision fp16) need the GPU backend; the CPU computes in "
                "fp32 or bf16");
  CONVNET_CHECK(cpu_has_bf16(),
                "bf16 on the CPU (--precision bf16 --device cpu) needs a CPU with avx512_bf16 "
                "or AMX; this one has neither (or ONEDNN_MAX_CPU_ISA excludes them): use "
                "--precision fp32");
}

Context::Context(const ContextOptions& options) : options_(options) {
  check_thread_count(options.num_threads);
  check_activation_dtype(options);
  if (options.backend == Backend::cuda) {
#ifdef CONVNET_HAVE_CUDA
    gpu_ = std::make_unique<GpuRuntime>(options.device);
    allocator_ = std::make_unique<CudaAllocator>(options.device);
    return;
#else
    CONVNET_CHECK(false,
                  "device cuda: this build has no GPU backend (the CUDA toolkit, cuDNN "
                  "or NCCL was not found when it was configured)");
#endif
  }
  // oneDNN on Debian uses the OpenMP runtime, so the thread count is OpenMP's.
  if (options.num_threads > 0) omp_set_num_threads(options.num_threads);
  num_threads_ = omp_get_max_threads();
  allocator_ = std::make_unique<CpuAllocator>();
  onednn_ = std::make_unique<OnednnRuntime>();
  const Layout native = cpu_preferred_blocked_layout();
  blocked_layout_ = options.blocked_layout.value_or(native);
  blocked_layout_is_native_ = blocked_layout_ == native;
  CONVNET_CHECK(is_blocked(blocked_layout_),
                "the CPU's blocked layout must be nchw8c or nchw16c, got ",
                to_string(blocked_layout_));
}

Context::~Context() = default;

void* Context::scratch(Scratch slot, std::size_t bytes) {
  const auto index = static_cast<std::size_t>(slot);
  if (scratch_.size() < static_cast<std::size_t>(Scratch::count))
    scratch_.resize(static_cast<std::size_t>(Scratch::count));
  Tensor& buffer = scratch_[index];
  const int64_t floats = static_cast<int64_t>((bytes + sizeof(float) - 1) / sizeof(float));
  if (!buffer.defined() || buffer.numel() < floats)
    buffer = Tensor::empty(Shape{std::max<int64_t>(floats, 1)}, *allocator_);
  return buffer.raw_data();
}

Tensor Context::scratch_tensor(Scratch slot, const Shape& shape, Layout layout, DType dtype) {
  void* data = scratch(slot, storage_numel(shape, layout) * dtype_size(dtype));
  return Tensor::wrap(data, shape, layout, allocator_->device(), dtype);
}

GpuRuntime& Context::gpu() {
  CONVNET_CHECK(gpu_ != nullptr, "GPU runtime requested on a ", to_string(backend()), " context");
  return *gpu_;
}

void Context::synchronize() {
#ifdef CONVNET_HAVE_CUDA
  if (gpu_) gpu_->synchronize();
#endif
}

std::size_t Context::device_bytes_in_use() {
#ifdef CONVNET_HAVE_CUDA
  if (gpu_) return gpu_->device_bytes_in_use();
#endif
  return 0;
}

OnednnRuntime& Context::onednn() {
  CONVNET_CHECK(onednn_ != nullptr, "oneDNN runtime requested on a ", to_string(backend()),
                " context");
  return *onednn_;
}

}  // namespace convnet
