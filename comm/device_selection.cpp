#include "comm/device_selection.h"

#include "core/error.h"

#ifdef CONVNET_HAVE_CUDA
#include "comm/nccl_communicator.h"
#include "core/cuda/device.h"
#include "core/cuda/runtime.h"
#endif

namespace convnet {

ContextOptions context_options_for_rank(Backend backend, int threads, const std::string& precision,
                                        const Communicator& communicator) {
  CONVNET_CHECK(precision != "bf16" && precision != "fp16", "--precision ", precision,
                " is not implemented yet: the GPU backend computes in fp32 (tf32 uses tensor "
                "cores on fp32 data)");
  CONVNET_CHECK(precision == "fp32" || precision == "tf32",
                "--precision must be fp32 or tf32, got '", precision, "'");
  CONVNET_CHECK(precision == "fp32" || backend == Backend::cuda,
                "--precision tf32 needs --device cuda");
  ContextOptions options;
  options.allow_tf32 = precision == "tf32";
  options.backend = backend;
  options.num_threads = threads;
#ifdef CONVNET_HAVE_CUDA
  if (backend == Backend::cuda)
    options.device = cuda::gpu_for_local_rank(communicator.local_rank(), communicator.local_size());
#endif
  return options;
}

std::unique_ptr<Communicator> make_gradient_communicator(Communicator& host, Context& context) {
#ifdef CONVNET_HAVE_CUDA
  if (context.backend() == Backend::cuda)
    return make_nccl_communicator(host, context.gpu().device, context.gpu().stream);
#endif
  return host.duplicate();
}

}  // namespace convnet
