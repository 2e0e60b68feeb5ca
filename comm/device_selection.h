// Which device a rank computes on, and what carries its gradients.
//
//   cpu:  the CPU with `threads` threads; gradients over a duplicate of the
//         host communicator (MPI, or the single-process one).
//   cuda: the GPU of the rank's local rank (an error naming the counts when a
//         node runs more ranks than it has GPUs); gradients over NCCL.
//
// precision: fp32 and bf16 on both devices (bf16 on CPUs with avx512_bf16 or
// AMX only); on the GPU also tf32 (convolutions may use TF32 tensor cores on
// f32 data) and fp16. bf16 and fp16 are mixed precision: activations in that
// type, f32 parameters, gradients, BN statistics and optimizer; fp16 needs
// loss scaling, see trainer/loss_scaler.h.
#pragma once

#include <memory>
#include <string>

#include "comm/communicator.h"
#include "core/context.h"

namespace convnet {

enum class Precision { fp32, tf32, bf16, fp16 };
template <>
struct NamedValues<Precision> {
  static constexpr std::pair<Precision, const char*> table[] = {{Precision::fp32, "fp32"},
                                                                {Precision::tf32, "tf32"},
                                                                {Precision::bf16, "bf16"},
                                                                {Precision::fp16, "fp16"}};
};
// True for bf16 and fp16.
inline bool is_mixed_precision(Precision precision) {
  return precision == Precision::bf16 || precision == Precision::fp16;
}

// `layout` is resolve_layout()'s: nchw8c / nchw16c set the CPU's blocked
// layout. Throws naming a precision the backend lacks.
ContextOptions context_options_for_rank(Backend backend, int threads, Precision precision,
                                        Layout layout, const Communicator& communicator);
// The activation layout a job runs: `layout` when given (nchw or nhwc on
// the GPU; nchw, nchw8c, nchw16c or nhwc on the CPU), else (auto, nullopt) on
// the GPU nhwc for bf16 / fp16 (tensor cores read channels-last) and nchw
// otherwise, and on the CPU the layout its kernels prefer
// (cpu_preferred_layout: nchw16c with AVX-512, nchw8c with AVX2; for bf16
// nhwc where AMX runs it).
// Throws naming a layout of the other device.
Layout resolve_layout(std::optional<Layout> layout, Backend backend, Precision precision);

// Collective over `host`'s ranks.
std::unique_ptr<Communicator> make_gradient_communicator(Communicator& host, Context& context);

}  // namespace convnet
