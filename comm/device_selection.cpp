#include "comm/device_selection.h"

#include "core/error.h"
#include "core/onednn.h"

#ifdef CONVNET_HAVE_CUDA
#include "comm/nccl_communicator.h"
#include "core/cuda/device.h"
#include "core/cuda/runtime.h"
#endif

namespace convnet {

ContextOptions context_options_for_rank(Backend backend, int threads, Precision precision,
                                        Layout layout, const Communicator& communicator) {
  CONVNET_CHECK(
      precision == Precision::fp32 || precision == Precision::bf16 || backend == Backend::cuda,
      "--precision ", name_of(precision),
      " needs --device cuda (the CPU backend computes in fp32 or bf16)");
  ContextOptions options;
  options.allow_tf32 = precision == Precision::tf32;
  if (precision == Precision::bf16) options.activation_dtype = DType::bf16;
  if (precision == Precision::fp16) options.activation_dtype = DType::f16;
  options.backend = backend;
  options.num_threads = threads;
  if (is_blocked(layout)) options.blocked_layout = layout;
#ifdef CONVNET_HAVE_CUDA
  if (backend == Backend::cuda)
    options.device = cuda::gpu_for_local_rank(communicator.local_rank(), communicator.local_size());
#else
  (void)communicator;
#endif
  return options;
}

Layout resolve_layout(std::optional<Layout> layout, Backend backend, Precision precision) {
  CONVNET_CHECK(!layout || !is_blocked(*layout) || backend == Backend::cpu, "--layout ",
                name_of(*layout), " is a CPU layout (the GPU runs nchw or nhwc)");
  if (layout) return *layout;
  if (backend == Backend::cpu)
    return cpu_preferred_layout(precision == Precision::bf16 ? DType::bf16 : DType::f32);
  return is_mixed_precision(precision) ? Layout::nhwc : Layout::nchw;
}

std::unique_ptr<Communicator> make_gradient_communicator(Communicator& host, Context& context) {
#ifdef CONVNET_HAVE_CUDA
  if (context.backend() == Backend::cuda)
    return make_nccl_communicator(host, context.gpu().device, context.gpu().stream);
#endif
  return host.duplicate();
}

}  // namespace convnet
