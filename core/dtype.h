// Element types. Parameters, gradients and optimizer state are f32; bf16 and
// f16 are the activation types of mixed precision: bf16 and f16 on the GPU,
// bf16 on CPUs with avx512_bf16 or AMX (core/bf16.h: its host conversions).
#pragma once

#include <cstddef>
#include <string>

namespace convnet {

enum class DType { f32, bf16, f16 };

inline std::size_t dtype_size(DType dtype) { return dtype == DType::f32 ? 4 : 2; }

inline std::string to_string(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return "f32";
    case DType::bf16:
      return "bf16";
    case DType::f16:
      return "f16";
  }
  return "?";
}

}  // namespace convnet
