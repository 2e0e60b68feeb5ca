#include "comm/device_selection.h"

#ifdef CONVNET_HAVE_CUDA
#include "comm/nccl_communicator.h"
#include "core/cuda/device.h"
#include "core/cuda/runtime.h"
#endif

namespace convnet {

ContextOptions context_options_for_rank(Backend backend, int threads,
                                        const Communicator& communicator) {
  ContextOptions options;
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
