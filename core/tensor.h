// Tensor: a typed, strided view of memory.
//
// A Tensor either owns its storage (Tensor::empty/zeros, allocated from an
// Allocator and freed when the last tensor sharing it goes away) or is a view:
//   - view.slice(dim, begin, end) / reshape() share the parent's storage
//     (the storage stays alive while any view of it exists);
//   - Tensor::wrap(ptr, ...) refers to memory owned by someone else (a flat
//     parameter buffer, a library workspace) and never frees it.
// Zero-copy channel concatenation (memory-efficient DenseNet) is a set of
// channel slices of one shared buffer: each is a strided view.
//
// Element access is for tests and small host-side code; layers hand data()
// to oneDNN/cuDNN with shape and strides.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/allocator.h"
#include "core/dtype.h"
#include "core/shape.h"

namespace convnet {

class Storage {
 public:
  Storage(Allocator& allocator, std::size_t bytes);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  std::size_t bytes() const { return bytes_; }
  Device device() const { return allocator_.device(); }

 private:
  Allocator& allocator_;
  void* data_;
  std::size_t bytes_;
};

class Tensor {
 public:
  Tensor() = default;  // an empty (undefined) tensor: defined() is false

  // Owning, contiguous, uninitialised.
  static Tensor empty(const Shape& shape, Allocator& allocator, DType dtype = DType::f32);
  // Owning, contiguous, zero-filled (host allocators only).
  static Tensor zeros(const Shape& shape, Allocator& allocator, DType dtype = DType::f32);
  // Non-owning view of external memory, contiguous strides unless given.
  static Tensor wrap(void* data, const Shape& shape, DType dtype = DType::f32,
                     Device device = Device::cpu, std::vector<int64_t> strides = {});

  bool defined() const { return data_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int64_t dim(int i) const { return shape_[i]; }
  int rank() const { return shape_.rank(); }
  int64_t numel() const { return shape_.numel(); }
  const std::vector<int64_t>& strides() const { return strides_; }  // in elements
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  bool owns_storage() const { return storage_ != nullptr; }
  bool is_contiguous() const;

  // Raw pointer to the first element.
  void* raw_data() const { return data_; }
  // Typed pointer; checks that T matches dtype (f32 -> float).
  template <typename T>
  T* data() const;

  // Host f32 element access by multi-index (tests and small host code only).
  float& at(std::initializer_list<int64_t> index) const;

  // View of elements [begin, end) along `dim`, sharing storage and strides.
  Tensor slice(int dim, int64_t begin, int64_t end) const;
  // Contiguous tensor viewed with another shape of the same numel.
  Tensor reshape(const Shape& shape) const;

  // Host-side helpers (Device::cpu, f32).
  void fill(float value) const;
  void copy_from(const Tensor& source) const;  // same shape, any strides
  std::vector<float> to_vector() const;        // logical (row-major) order

 private:
  std::shared_ptr<Storage> storage_;  // null for wrapped memory
  void* data_ = nullptr;
  Shape shape_;
  std::vector<int64_t> strides_;
  DType dtype_ = DType::f32;
  Device device_ = Device::cpu;
};

template <>
float* Tensor::data<float>() const;

}  // namespace convnet
