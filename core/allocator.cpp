#include "core/allocator.h"

#include <algorithm>
#include <cstdlib>

#include "core/error.h"

namespace convnet {

void* CpuAllocator::allocate(std::size_t bytes) {
  constexpr std::size_t kAlignment = 64;
  const std::size_t rounded =
      std::max<std::size_t>(kAlignment, (bytes + kAlignment - 1) / kAlignment * kAlignment);
  void* ptr = std::aligned_alloc(kAlignment, rounded);
  CONVNET_CHECK(ptr != nullptr, "out of host memory allocating ", bytes, " bytes (", in_use_.load(),
                " bytes already in use)");
  ++count_;
  const std::size_t now = in_use_ += bytes;
  std::size_t peak = peak_.load();
  while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
  }
  return ptr;
}

void CpuAllocator::deallocate(void* ptr, std::size_t bytes) noexcept {
  std::free(ptr);
  in_use_ -= bytes;
}

}  // namespace convnet
