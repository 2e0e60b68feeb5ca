// Which device a rank computes on, and what carries its gradients.
//
//   cpu:  the CPU with `threads` threads; gradients over a duplicate of the
//         host communicator (MPI, or the single-process one).
//   cuda: the GPU of the rank's local rank (an error naming the counts when a
//         node runs more ranks than it has GPUs); gradients over NCCL.
//
// precision: fp32 (both devices); on the GPU also tf32 (convolutions may
// use TF32 tensor cores on f32 data), bf16 and fp16 (mixed precision:
// activations in that type, f32 parameters, gradients, BN statistics and
// optimizer; fp16 needs loss scaling, see trainer/loss_scaler.h).
#pragma once

#include <memory>
#include <string>

#include "comm/communicator.h"
#include "core/context.h"

namespace convnet {

// `layout` is resolve_layout()'s: nchw8c / nchw16c set the CPU's blocked layout.
ContextOptions context_options_for_rank(Backend backend, int threads, const std::string& precision,
                                        const std::string& layout,
                                        const Communicator& communicator);
// The activation layout a job runs: `layout` when given (nchw or nhwc on
// the GPU; nchw, nchw8c or nchw16c on the CPU), else ("auto") on the GPU
// nhwc for bf16 / fp16 (tensor cores read channels-last) and nchw otherwise,
// and on the CPU the block its kernels prefer (cpu_preferred_blocked_layout:
// nchw16c with AVX-512, nchw8c with AVX2). Throws naming a bad value or a
// layout of the other device.
std::string resolve_layout(const std::string& layout, Backend backend,
                           const std::string& precision);
// True for the CPU's blocked layouts (a resolved layout's ModelSpec::blocked_layout).
inline bool runs_blocked(const std::string& layout) {
  return layout == "nchw8c" || layout == "nchw16c";
}
// True for bf16 and fp16.
bool is_mixed_precision(const std::string& precision);

// Collective over `host`'s ranks.
std::unique_ptr<Communicator> make_gradient_communicator(Communicator& host, Context& context);

}  // namespace convnet
