// Allocators hand out raw device or host memory. Tensors keep a reference to
// the allocator that produced their storage, so an allocator must outlive
// every tensor it allocated (the Context that owns it does).
#pragma once

#include <atomic>
#include <cstddef>
#include <string>

namespace convnet {

enum class Device { cpu, cuda };

class Allocator {
 public:
  virtual ~Allocator() = default;
  // Returns memory of at least `bytes` bytes, aligned to 64 bytes; throws convnet::Error on
  // failure.
  virtual void* allocate(std::size_t bytes) = 0;
  virtual void deallocate(void* ptr, std::size_t bytes) noexcept = 0;
  virtual Device device() const = 0;
  // Bytes currently allocated through this allocator (for memory reports).
  virtual std::size_t bytes_in_use() const = 0;
  virtual std::size_t peak_bytes_in_use() const = 0;
  // allocate() calls so far: a steady-state training step makes none (its
  // activations, scratch and workspaces are allocated when the net is built).
  virtual std::size_t allocation_count() const = 0;
};

// Host memory, 64-byte aligned (one cache line; AVX-512 friendly).
class CpuAllocator final : public Allocator {
 public:
  void* allocate(std::size_t bytes) override;
  void deallocate(void* ptr, std::size_t bytes) noexcept override;
  Device device() const override { return Device::cpu; }
  std::size_t bytes_in_use() const override { return in_use_; }
  std::size_t peak_bytes_in_use() const override { return peak_; }
  std::size_t allocation_count() const override { return count_; }

 private:
  std::atomic<std::size_t> in_use_{0};
  std::atomic<std::size_t> peak_{0};
  std::atomic<std::size_t> count_{0};
};

}  // namespace convnet
