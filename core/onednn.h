// oneDNN glue for the CPU backend: the engine/stream pair a Context owns, and
// conversions from Tensor to oneDNN memory descriptors and memory objects.
// dnnl::engine, dnnl::stream, dnnl::memory and dnnl::primitive are already
// reference-counted RAII handles; this header only adds error translation.
#pragma once

#include <oneapi/dnnl/dnnl.hpp>
#include <string>

#include "core/error.h"
#include "core/tensor.h"

namespace convnet {

struct OnednnRuntime {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
};

// oneDNN's name for an element type (f32 or bf16 on the CPU).
dnnl::memory::data_type onednn_data_type(DType dtype);
// Memory descriptor with the tensor's shape, strides and element type.
dnnl::memory::desc onednn_desc(const Tensor& tensor);
// Dense memory of a layout (nchw: row-major; nchw8c, nchw16c: oneDNN's nChw8c, nChw16c).
dnnl::memory::desc onednn_desc(const Shape& shape, Layout layout, DType dtype = DType::f32);
// Same, viewing the tensor with another shape (e.g. (N, C) as (N, C, 1, 1)).
dnnl::memory::desc onednn_desc(const Shape& shape, const std::vector<int64_t>& strides,
                               DType dtype = DType::f32);
// True when the running CPU has bf16 arithmetic oneDNN uses (avx512_bf16 or
// AMX, within ONEDNN_MAX_CPU_ISA): the CPU's mixed precision needs it.
bool cpu_has_bf16();
// The blocked activation layout oneDNN's convolutions prefer on the running
// CPU (at most the ISA ONEDNN_MAX_CPU_ISA allows): nchw16c where they run
// AVX-512 kernels, nchw8c on AVX2 and older.
Layout cpu_preferred_blocked_layout();
// The activation layout oneDNN's convolutions prefer for `dtype` on the
// running CPU: cpu_preferred_blocked_layout() for f32; for bf16 nhwc where
// AMX kernels run (they read channels-last), else the block of its
// avx512_bf16 kernels.
Layout cpu_preferred_layout(DType dtype);
// Memory object pointing at the tensor's data (no copy); the descriptor's
// element type and channel block must be the tensor's.
dnnl::memory onednn_memory(const dnnl::memory::desc& desc, const dnnl::engine& engine,
                           const Tensor& tensor);

// dst = src, or dst += src (accumulate), for host tensors of one shape and
// layout in f32 or bf16 (converting between them), as one oneDNN reorder
// (JIT code for the running CPU; a sum post-op accumulates).
void onednn_copy(const Tensor& dst, const Tensor& src, bool accumulate);

// Runs `fn`, turning dnnl::error into convnet::Error that names `what`.
template <typename Fn>
auto onednn_call(const std::string& what, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const dnnl::error& e) {
    throw Error("oneDNN failed in " + what + ": " + e.what() + " (status " +
                std::to_string(static_cast<int>(e.status)) + ")");
  }
}

}  // namespace convnet
