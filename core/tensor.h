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
// to oneDNN/cuDNN with shape and strides (or layout).
//
// Layout: the shape is always logical, (N, C, H, W). Layout::nchw tensors are
// strided as above. Layout::nchw8c and nchw16c are oneDNN's nChw8c and
// nChw16c, the CPU backend's fast activation layouts (the block of AVX2 and of
// AVX-512 kernels): physically (N, ceil(C/B), H, W, B) with B = channel_block()
// = 8 or 16, B channels interleaved per pixel; they require rank 4, have no
// strides and support batch slices only. When C is not a multiple of B the
// last block is padded with zero lanes, which every writer keeps zero
// (oneDNN's primitives read them as zeros and write zeros there):
// storage_numel() counts them. Layout::nhwc is the GPU
// backend's channels-last layout: physically (N, H, W, C), expressed through
// the strides (HWC, 1, WC, C); it can be sliced like nchw (a slice keeps the
// tag but is no longer dense: is_dense() tells).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/allocator.h"
#include "core/dtype.h"
#include "core/named_values.h"
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

enum class Layout { nchw, nchw8c, nchw16c, nhwc };
template <>
struct NamedValues<Layout> {
  static constexpr std::pair<Layout, const char*> table[] = {{Layout::nchw, "nchw"},
                                                             {Layout::nchw8c, "nchw8c"},
                                                             {Layout::nchw16c, "nchw16c"},
                                                             {Layout::nhwc, "nhwc"}};
};
// Channels per block: 8 (nchw8c), 16 (nchw16c), 1 for the unblocked layouts.
int64_t channel_block(Layout layout);
inline bool is_blocked(Layout layout) { return channel_block(layout) > 1; }
// The strides of a dense channels-last (N, C, H, W) tensor: (HWC, 1, WC, C).
std::vector<int64_t> channels_last_strides(const Shape& shape);
// The elements a dense tensor of `shape` in `layout` occupies: numel, except
// the blocked layouts, whose channels round up to a multiple of the block (the zero lanes).
int64_t storage_numel(const Shape& shape, Layout layout);
int64_t padded_channels(int64_t channels, Layout layout);  // ceil(channels / B) * B
std::string to_string(Layout layout);

class Tensor {
 public:
  Tensor() = default;  // an empty (undefined) tensor: defined() is false

  // Owning, contiguous (or blocked), uninitialised.
  static Tensor empty(const Shape& shape, Allocator& allocator, DType dtype = DType::f32,
                      Layout layout = Layout::nchw);
  // Owning, zero-filled (on a device: enqueued on cuda::current_stream()).
  static Tensor zeros(const Shape& shape, Allocator& allocator, DType dtype = DType::f32,
                      Layout layout = Layout::nchw);
  // Non-owning view of external memory, contiguous strides unless given.
  static Tensor wrap(void* data, const Shape& shape, DType dtype = DType::f32,
                     Device device = Device::cpu, std::vector<int64_t> strides = {});
  // Non-owning view of external dense memory in a layout.
  static Tensor wrap(void* data, const Shape& shape, Layout layout, Device device = Device::cpu,
                     DType dtype = DType::f32);

  bool defined() const { return data_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int64_t dim(int i) const { return shape_[i]; }
  int rank() const { return shape_.rank(); }
  int64_t numel() const { return shape_.numel(); }
  // Elements the memory of a dense tensor spans (numel, plus a blocked layout's zero lanes).
  int64_t storage_numel() const { return convnet::storage_numel(shape_, layout_); }
  // Blocked with C not a multiple of the block: the last channel block has zero lanes.
  bool has_padding() const;
  // In elements; for a blocked layout only strides()[0] (the batch stride) is meaningful.
  const std::vector<int64_t>& strides() const { return strides_; }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  Layout layout() const { return layout_; }
  bool owns_storage() const { return storage_ != nullptr; }
  // Row-major dense (always false for the blocked layouts and nhwc).
  bool is_contiguous() const;
  // Dense in its layout: the elements fill storage_numel() consecutive ones.
  bool is_dense() const;

  // Raw pointer to the first element.
  void* raw_data() const { return data_; }
  // Typed pointer; checks that T matches dtype (f32 -> float, bf16 -> Bf16).
  template <typename T>
  T* data() const;

  // Host f32 element access by multi-index (tests and small host code only).
  float& at(std::initializer_list<int64_t> index) const;

  // View of elements [begin, end) along `dim`, sharing storage and strides
  // (dim 0 only for the blocked layouts).
  Tensor slice(int dim, int64_t begin, int64_t end) const;
  // Contiguous tensor viewed with another shape of the same numel.
  Tensor reshape(const Shape& shape) const;

  // Host-side helpers (Device::cpu; f32 or bf16, converting through f32); fill and
  // copy_from also zero a blocked layout's padding lanes.
  void fill(float value) const;
  // Sets every element to zero, on the host or (dense tensors) on the GPU,
  // enqueued on cuda::current_stream().
  void set_zero() const;
  void copy_from(const Tensor& source) const;  // same shape, any strides or layout
  std::vector<float> to_vector() const;        // logical (row-major) order

  // Calls fn(logical_index, element_offset) for every element in logical order.
  template <typename Fn>
  void for_each_element(Fn fn) const;

 private:
  std::shared_ptr<Storage> storage_;  // null for wrapped memory
  void* data_ = nullptr;
  Shape shape_;
  std::vector<int64_t> strides_;
  DType dtype_ = DType::f32;
  Layout layout_ = Layout::nchw;
  Device device_ = Device::cpu;
};

template <>
float* Tensor::data<float>() const;
struct Bf16;  // core/bf16.h
template <>
Bf16* Tensor::data<Bf16>() const;

// dst (dense f32, host or GPU) = the dst.numel() floats at host address src;
// a GPU copy is enqueued on cuda::current_stream().
void copy_from_host(const Tensor& dst, const float* src);
// dst = src for tensors of one shape on any devices (dense when on a GPU);
// returns once the copy is done.
void copy_tensor(const Tensor& dst, const Tensor& src);
// `t` itself when it is host memory, else a host copy (waits for the GPU).
Tensor host_copy_if_device(const Tensor& t);

template <typename Fn>
void Tensor::for_each_element(Fn fn) const {
  if (is_blocked(layout_)) {
    const int64_t n = shape_[0], c = shape_[1], h = shape_[2], w = shape_[3];
    const int64_t b = channel_block(layout_);
    int64_t k = 0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < c; ++j)
        for (int64_t y = 0; y < h; ++y)
          for (int64_t x = 0; x < w; ++x)
            fn(k++, i * strides_[0] + (j / b) * h * w * b + y * w * b + x * b + j % b);
    return;
  }
  const int r = shape_.rank();
  std::vector<int64_t> index(r, 0);
  const int64_t total = shape_.numel();
  int64_t offset = 0;
  for (int64_t k = 0; k < total; ++k) {
    fn(k, offset);
    for (int d = r - 1; d >= 0; --d) {
      offset += strides_[d];
      if (++index[d] < shape_[d]) break;
      offset -= strides_[d] * shape_[d];
      index[d] = 0;
    }
  }
}

}  // namespace convnet
