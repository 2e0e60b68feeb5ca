// Context: everything a layer needs to run, passed explicitly (no singletons).
//
// One Context per process (per rank) and backend. It owns the allocator and the
// backend's library handles (oneDNN engine and stream on the CPU; the GPU
// backend adds its cuDNN/cuBLAS handles and streams). Layers keep a reference
// to the Context they were built with, so it must outlive them.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/allocator.h"
#include "core/named_values.h"
#include "core/tensor.h"

namespace convnet {

enum class Backend { cpu, cuda };
template <>
struct NamedValues<Backend> {
  static constexpr std::pair<Backend, const char*> table[] = {{Backend::cpu, "cpu"},
                                                              {Backend::cuda, "cuda"}};
};
inline std::string to_string(Backend backend) { return name_of(backend); }

struct ContextOptions {
  Backend backend = Backend::cpu;
  // Compute threads for the CPU backend; 0 keeps the OpenMP default (OMP_NUM_THREADS or all cores).
  int num_threads = 0;
  // The GPU this context drives (backend cuda): usually the rank's local rank.
  int device = 0;
  // GPU convolutions on fp32 data may use TF32 tensor cores (10-bit mantissa
  // products, fp32 accumulation): faster, less exact (--precision tf32).
  bool allow_tf32 = false;
  // The element type of activations and their gradients: f32, or bf16 / f16
  // for mixed precision (--precision bf16|fp16), where parameters, their
  // gradients, BN statistics and the optimizer stay f32. The CPU backend
  // takes bf16 on CPUs with avx512_bf16 or AMX (cpu_has_bf16()).
  DType activation_dtype = DType::f32;
  // The CPU's blocked activation layout (nchw8c or nchw16c) for models that
  // run blocked; unset: the block oneDNN prefers on this CPU
  // (cpu_preferred_blocked_layout(): nchw16c with AVX-512, nchw8c with AVX2).
  std::optional<Layout> blocked_layout = std::nullopt;
};

// The CPUs this machine has online: the most compute threads (--threads) a
// context takes; check_thread_count throws naming the limit beyond it.
int machine_cpus();
void check_thread_count(int threads);

// Throws, naming what is missing, unless `options.backend` can compute with
// `options.activation_dtype` on this machine.
void check_activation_dtype(const ContextOptions& options);

struct OnednnRuntime;  // core/onednn.h
struct GpuRuntime;     // core/cuda/runtime.h (builds with the GPU backend)

// Slots of the context's scratch memory (see Context::scratch).
enum class Scratch {
  activation,
  weights,
  weight_gradient,
  dense_block,
  layout_copy,  // an activation copied into another layout for one primitive call
  workspace,    // a library's workspace for one call (cuDNN's convolution algorithms)
  gpu_mask,     // a masked copy of an output gradient (GPU fused BN+ReLU backward)
  discarded,    // an output a library call must write but the caller does not want
  reserve,      // a library's reserve space that no later call reads (cuDNN's fused BN+ReLU)
  reduction,    // per-block partial sums of a reduction (GPU channels-last batch norm)
  count
};

class Context {
 public:
  explicit Context(const ContextOptions& options = {});
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  Backend backend() const { return options_.backend; }
  int num_threads() const { return num_threads_; }
  Allocator& allocator() { return *allocator_; }
  // The oneDNN engine and stream; throws unless backend() is cpu.
  OnednnRuntime& onednn();
  // The CUDA device, stream and cuDNN handle; throws unless backend() is cuda.
  GpuRuntime& gpu();
  // Waits for the work enqueued on the GPU's stream; nothing on the CPU.
  void synchronize();
  // Memory in use on the context's GPU as the driver counts it (allocations
  // of every process, the CUDA context and the libraries'), bytes; 0 on the CPU.
  std::size_t device_bytes_in_use();
  // The CUDA device index (backend cuda).
  int gpu_index() const { return options_.device; }
  bool allow_tf32() const { return options_.allow_tf32; }
  DType activation_dtype() const { return options_.activation_dtype; }
  // The CPU's blocked activation layout: nchw8c or nchw16c (backend cpu).
  Layout blocked_layout() const { return blocked_layout_; }
  // True when that is the block this CPU's kernels prefer (nchw16c on
  // AVX-512, nchw8c on AVX2): oneDNN then runs its kernels for the CPU's ISA.
  bool blocked_layout_is_native() const { return blocked_layout_is_native_; }

  // Scratch memory shared by every layer of this context, one buffer per
  // slot, grown on demand. Layers run one at a time, so a layer may use a
  // slot within one call: the memory stays valid until the next request for
  // the same slot. This replaces per-layer temporaries (the gradient of a
  // fanned-out input, reordered weights), which would otherwise add up to
  // several copies of the activations and parameters.
  void* scratch(Scratch slot, std::size_t bytes);
  // Dense view of scratch memory of a shape, layout and element type.
  Tensor scratch_tensor(Scratch slot, const Shape& shape, Layout layout = Layout::nchw,
                        DType dtype = DType::f32);

 private:
  ContextOptions options_;
  int num_threads_ = 1;
  Layout blocked_layout_ = Layout::nchw8c;
  bool blocked_layout_is_native_ = true;
  std::unique_ptr<GpuRuntime> gpu_;  // destroyed after the memory below
  std::unique_ptr<Allocator> allocator_;
  std::unique_ptr<OnednnRuntime> onednn_;
  std::vector<Tensor> scratch_;  // one per Scratch slot
};

}  // namespace convnet
