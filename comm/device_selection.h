// Which device a rank computes on, and what carries its gradients.
//
//   cpu:  the CPU with `threads` threads; gradients over a duplicate of the
//         host communicator (MPI, or the single-process one).
//   cuda: the GPU of the rank's local rank (an error naming the counts when a
//         node runs more ranks than it has GPUs); gradients over NCCL.
//
// precision: fp32 (both devices), or tf32 (GPU: convolutions may use TF32
// tensor cores). bf16 and fp16 are named in the error as not implemented.
#pragma once

#include <memory>

#include "comm/communicator.h"
#include "core/context.h"

namespace convnet {

ContextOptions context_options_for_rank(Backend backend, int threads, const std::string& precision,
                                        const Communicator& communicator);
// Collective over `host`'s ranks.
std::unique_ptr<Communicator> make_gradient_communicator(Communicator& host, Context& context);

}  // namespace convnet
