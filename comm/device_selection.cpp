#include "comm/device_selection.h"

#include "core/error.h"
#include "core/onednn.h"

#ifdef CONVNET_HAVE_CUDA
#include "comm/nccl_communicator.h"
#include "core/cuda/device.h"
#include "core/cuda/runtime.h"
#endif

namespace convnet {

ContextOptions context_options_for_rank(Backend backend, int threads, const std::string& precision,
                                        const std::string& layout,
                                        const Communicator& communicator) {
  CONVNET_CHECK(precision == "fp32" || precision == "tf32" || is_mixed_precision(precision),
                "--precision must be fp32, tf32, bf16 or fp16, got '", precision, "'");
  CONVNET_CHECK(precision == "fp32" || backend == Backend::cuda, "--precision ", precision,
                " needs --device cuda (the CPU backend computes in fp32)");
  ContextOptions options;
  options.allow_tf32 = precision == "tf32";
  if (precision == "bf16") options.activation_dtype = DType::bf16;
  if (precision == "fp16") options.activation_dtype = DType::f16;
  options.backend = backend;
  options.num_threads = threads;
  if (runs_blocked(layout))
    options.blocked_layout = layout == "nchw16c" ? Layout::nchw16c : Layout::nchw8c;
#ifdef CONVNET_HAVE_CUDA
  if (backend == Backend::cuda)
    options.device = cuda::gpu_for_local_rank(communicator.local_rank(), communicator.local_size());
#endif
  return options;
}

bool is_mixed_precision(const std::string& precision) {
  return precision == "bf16" || precision == "fp16";
}

std::string resolve_layout(const std::string& layout, Backend backend,
                           const std::string& precision) {
  CONVNET_CHECK(layout == "auto" || layout == "nchw" || layout == "nhwc" || runs_blocked(layout),
                "--layout must be auto, nchw, nhwc (GPU), nchw8c or nchw16c (CPU), got '", layout,
                "'");
  CONVNET_CHECK(layout != "nhwc" || backend == Backend::cuda, "--layout nhwc needs --device cuda");
  CONVNET_CHECK(!runs_blocked(layout) || backend == Backend::cpu, "--layout ", layout,
                " is a CPU layout (the GPU runs nchw or nhwc)");
  if (layout != "auto") return layout;
  if (backend == Backend::cpu) return to_string(cpu_preferred_blocked_layout());
  return is_mixed_precision(precision) ? "nhwc" : "nchw";
}

std::unique_ptr<Communicator> make_gradient_communicator(Communicator& host, Context& context) {
#ifdef CONVNET_HAVE_CUDA
  if (context.backend() == Backend::cuda)
    return make_nccl_communicator(host, context.gpu().device, context.gpu().stream);
#endif
  return host.duplicate();
}

}  // namespace convnet
