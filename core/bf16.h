// bf16 on the host: the upper half of an IEEE f32 (8 exponent bits, 7
// mantissa bits). The CPU backend's mixed precision (--precision bf16 on a CPU
// with avx512_bf16 or AMX) stores activations and their gradients as bf16 and
// computes in f32: oneDNN's kernels convert as they load and store, and the
// host loops here (gradient copies and sums, the SE gate's reduction, the
// padding shortcut) load through to_f32 and store through to_bf16.
#pragma once

#include <cstdint>
#include <cstring>

#include "core/dtype.h"
#include "core/error.h"

namespace convnet {

struct Bf16 {
  uint16_t bits;
};

inline float to_f32(Bf16 value) {
  const uint32_t word = static_cast<uint32_t>(value.bits) << 16;
  float f;
  std::memcpy(&f, &word, sizeof f);
  return f;
}
inline float to_f32(float value) { return value; }

// Rounds to nearest, ties to even (as oneDNN and the CPU's vcvtneps2bf16); a
// NaN stays a (quiet) NaN.
inline Bf16 to_bf16(float value) {
  uint32_t word;
  std::memcpy(&word, &value, sizeof word);
  if ((word & 0x7fffffffu) > 0x7f800000u) return Bf16{static_cast<uint16_t>((word >> 16) | 0x40)};
  word += 0x7fffu + ((word >> 16) & 1u);
  return Bf16{static_cast<uint16_t>(word >> 16)};
}

// Stores an f32 value as element type T.
template <typename T>
inline T from_f32(float value);
template <>
inline float from_f32<float>(float value) {
  return value;
}
template <>
inline Bf16 from_f32<Bf16>(float value) {
  return to_bf16(value);
}

// Calls fn(T{}) with T the host element type of `dtype` (float or Bf16); f16
// has no host arithmetic (the GPU's mixed precision only).
template <typename Fn>
decltype(auto) with_host_type(DType dtype, Fn&& fn) {
  CONVNET_CHECK(dtype != DType::f16, "f16 tensors have no host arithmetic (GPU mixed precision)");
  if (dtype == DType::bf16) return fn(Bf16{});
  return fn(float{});
}

}  // namespace convnet
