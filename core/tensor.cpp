#include "core/tensor.h"

#include <cstring>

#include "core/bf16.h"
#include "core/error.h"
#ifdef CONVNET_HAVE_CUDA
#include "core/cuda/check.h"
#include "core/cuda/runtime.h"
#endif

namespace convnet {

Storage::Storage(Allocator& allocator, std::size_t bytes)
    : allocator_(allocator), data_(allocator.allocate(bytes)), bytes_(bytes) {}

Storage::~Storage() { allocator_.deallocate(data_, bytes_); }

std::string to_string(Layout layout) { return name_of(layout); }

std::vector<int64_t> channels_last_strides(const Shape& shape) {
  CONVNET_CHECK(shape.rank() == 4, "layout nhwc needs (N, C, H, W), got ", shape);
  const int64_t c = shape[1], h = shape[2], w = shape[3];
  return {h * w * c, 1, w * c, c};
}

int64_t channel_block(Layout layout) {
  switch (layout) {
    case Layout::nchw8c:
      return 8;
    case Layout::nchw16c:
      return 16;
    case Layout::nchw:
    case Layout::nhwc:
      break;
  }
  return 1;
}

int64_t padded_channels(int64_t channels, Layout layout) {
  const int64_t block = channel_block(layout);
  return (channels + block - 1) / block * block;
}

int64_t storage_numel(const Shape& shape, Layout layout) {
  if (!is_blocked(layout)) return shape.numel();
  return shape[0] * padded_channels(shape[1], layout) * shape[2] * shape[3];
}

namespace {
void check_layout_fits(const Shape& shape, Layout layout) {
  CONVNET_CHECK(!is_blocked(layout) || shape.rank() == 4, "layout ", to_string(layout),
                " needs (N, C, H, W), got ", shape);
  CONVNET_CHECK(layout != Layout::nhwc || shape.rank() == 4, "layout nhwc needs (N, C, H, W), got ",
                shape);
}

// nchw: row-major; nhwc: channels-last; blocked: row-major over the padded
// channels (only the batch stride is used).
std::vector<int64_t> layout_strides(const Shape& shape, Layout layout) {
  switch (layout) {
    case Layout::nhwc:
      return channels_last_strides(shape);
    case Layout::nchw8c:
    case Layout::nchw16c:
      return Shape{shape[0], padded_channels(shape[1], layout), shape[2], shape[3]}
          .contiguous_strides();
    case Layout::nchw:
      break;
  }
  return shape.contiguous_strides();
}
}  // namespace

Tensor Tensor::empty(const Shape& shape, Allocator& allocator, DType dtype, Layout layout) {
  CONVNET_CHECK(shape.all_positive(), "tensor shape ", shape,
                " has a zero-sized or negative dimension");
  check_layout_fits(shape, layout);
  Tensor t;
  t.storage_ = std::make_shared<Storage>(allocator,
                                         convnet::storage_numel(shape, layout) * dtype_size(dtype));
  t.data_ = t.storage_->data();
  t.shape_ = shape;
  t.strides_ = layout_strides(shape, layout);
  t.dtype_ = dtype;
  t.device_ = allocator.device();
  t.layout_ = layout;
  if (t.has_padding() && t.device_ == Device::cpu) t.set_zero();  // the lanes stay zero
  return t;
}

Tensor Tensor::zeros(const Shape& shape, Allocator& allocator, DType dtype, Layout layout) {
  Tensor t = empty(shape, allocator, dtype, layout);
  t.set_zero();
  return t;
}

Tensor Tensor::wrap(void* data, const Shape& shape, DType dtype, Device device,
                    std::vector<int64_t> strides) {
  CONVNET_CHECK(data != nullptr, "Tensor::wrap of a null pointer");
  CONVNET_CHECK(shape.all_positive(), "tensor shape ", shape,
                " has a zero-sized or negative dimension");
  if (strides.empty()) strides = shape.contiguous_strides();
  CONVNET_CHECK(static_cast<int>(strides.size()) == shape.rank(), "shape ", shape, " has ",
                shape.rank(), " dimensions but ", strides.size(), " strides were given");
  Tensor t;
  t.data_ = data;
  t.shape_ = shape;
  t.strides_ = std::move(strides);
  t.dtype_ = dtype;
  t.device_ = device;
  return t;
}

Tensor Tensor::wrap(void* data, const Shape& shape, Layout layout, Device device, DType dtype) {
  check_layout_fits(shape, layout);
  Tensor t = wrap(data, shape, dtype, device, layout_strides(shape, layout));
  t.layout_ = layout;
  return t;
}

bool Tensor::is_contiguous() const {
  return layout_ == Layout::nchw && strides_ == shape_.contiguous_strides();
}

bool Tensor::is_dense() const {
  switch (layout_) {
    case Layout::nchw:
      return is_contiguous();
    case Layout::nchw8c:
    case Layout::nchw16c:
      return true;  // batch slices only
    case Layout::nhwc:
      return strides_ == channels_last_strides(shape_);
  }
  return false;
}

template <>
float* Tensor::data<float>() const {
  CONVNET_CHECK(dtype_ == DType::f32, "tensor holds ", to_string(dtype_), ", not f32");
  return static_cast<float*>(data_);
}

template <>
Bf16* Tensor::data<Bf16>() const {
  CONVNET_CHECK(dtype_ == DType::bf16, "tensor holds ", to_string(dtype_), ", not bf16");
  return static_cast<Bf16*>(data_);
}

float& Tensor::at(std::initializer_list<int64_t> index) const {
  CONVNET_CHECK(static_cast<int>(index.size()) == rank(), "index of rank ", index.size(),
                " into a tensor of shape ", shape_);
  CONVNET_CHECK(device_ == Device::cpu, "Tensor::at on device memory");
  int i = 0;
  for (int64_t v : index) {
    CONVNET_CHECK(v >= 0 && v < shape_[i], "index ", v, " out of range for dim ", i, " of ",
                  shape_);
    ++i;
  }
  const int64_t* ix = index.begin();
  if (is_blocked(layout_)) {
    const int64_t h = shape_[2], w = shape_[3], b = channel_block(layout_);
    return data<float>()[ix[0] * strides_[0] + (ix[1] / b) * h * w * b + ix[2] * w * b + ix[3] * b +
                         ix[1] % b];
  }
  int64_t offset = 0;
  for (int d = 0; d < rank(); ++d) offset += ix[d] * strides_[d];
  return data<float>()[offset];
}

Tensor Tensor::slice(int dim, int64_t begin, int64_t end) const {
  CONVNET_CHECK(defined(), "slice of an undefined tensor");
  if (dim < 0) dim += rank();
  CONVNET_CHECK(dim >= 0 && dim < rank(), "slice dim ", dim, " of a tensor of shape ", shape_);
  CONVNET_CHECK(0 <= begin && begin < end && end <= shape_[dim], "slice [", begin, ", ", end,
                ") of dim ", dim, " of a tensor of shape ", shape_);
  CONVNET_CHECK(!is_blocked(layout_) || dim == 0, "a ", to_string(layout_),
                " tensor can be sliced along the batch only");
  Tensor t = *this;
  t.shape_[dim] = end - begin;
  t.data_ = static_cast<char*>(data_) + begin * strides_[dim] * dtype_size(dtype_);
  return t;
}

Tensor Tensor::reshape(const Shape& shape) const {
  CONVNET_CHECK(is_contiguous(), "reshape of a non-contiguous or blocked tensor of shape ", shape_);
  CONVNET_CHECK(shape.numel() == numel(), "cannot reshape ", shape_, " to ", shape);
  Tensor t = *this;
  t.shape_ = shape;
  t.strides_ = shape.contiguous_strides();
  return t;
}

bool Tensor::has_padding() const {
  return is_blocked(layout_) && shape_[1] % channel_block(layout_) != 0;
}

void Tensor::fill(float value) const {
  CONVNET_CHECK(device_ == Device::cpu, "Tensor::fill on device memory");
  if (has_padding()) set_zero();  // the zero lanes, which the loop below skips
  with_host_type(dtype_, [&](auto type) {
    using T = decltype(type);
    T* p = data<T>();
    const T stored = from_f32<T>(value);
    for_each_element([&](int64_t, int64_t offset) { p[offset] = stored; });
  });
}

void Tensor::set_zero() const {
  if (device_ == Device::cpu && is_dense()) {
    std::memset(data_, 0, storage_numel() * dtype_size(dtype_));
    return;
  }
  if (device_ == Device::cpu) return fill(0.0f);
#ifdef CONVNET_HAVE_CUDA
  cuda::zero(*this, cuda::current_stream());
#else
  CONVNET_CHECK(false, "device memory in a build without the GPU backend");
#endif
}

void Tensor::copy_from(const Tensor& source) const {
  CONVNET_CHECK(device_ == Device::cpu && source.device() == Device::cpu,
                "copy_from on device memory");
  CONVNET_CHECK(source.shape() == shape_, "copy_from: shape ", source.shape(), " into ", shape_);
  if (is_dense() && source.is_dense() && layout_ == source.layout() && dtype_ == source.dtype()) {
    std::memcpy(data_, source.raw_data(), storage_numel() * dtype_size(dtype_));
    return;
  }
  std::vector<float> values = source.to_vector();
  if (has_padding()) set_zero();
  with_host_type(dtype_, [&](auto type) {
    using T = decltype(type);
    T* p = data<T>();
    for_each_element([&](int64_t k, int64_t offset) { p[offset] = from_f32<T>(values[k]); });
  });
}

std::vector<float> Tensor::to_vector() const {
  CONVNET_CHECK(device_ == Device::cpu, "to_vector on device memory");
  std::vector<float> values(numel());
  with_host_type(dtype_, [&](auto type) {
    const auto* p = data<decltype(type)>();
    for_each_element([&](int64_t k, int64_t offset) { values[k] = to_f32(p[offset]); });
  });
  return values;
}

void copy_from_host(const Tensor& dst, const float* src) {
  const Tensor source = Tensor::wrap(const_cast<float*>(src), dst.shape(), dst.layout());
  if (dst.device() == Device::cpu) return dst.copy_from(source);
#ifdef CONVNET_HAVE_CUDA
  cuda::copy(dst, source, cuda::current_stream());
#else
  CONVNET_CHECK(false, "device memory in a build without the GPU backend");
#endif
}

void copy_tensor(const Tensor& dst, const Tensor& src) {
  if (dst.device() == Device::cpu && src.device() == Device::cpu) return dst.copy_from(src);
#ifdef CONVNET_HAVE_CUDA
  cuda::copy(dst, src, cuda::current_stream());
  CONVNET_CUDA(cudaStreamSynchronize(cuda::current_stream()));
#else
  CONVNET_CHECK(false, "device memory in a build without the GPU backend");
#endif
}

Tensor host_copy_if_device(const Tensor& t) {
  if (t.device() == Device::cpu) return t;
#ifdef CONVNET_HAVE_CUDA
  return cuda::to_host(t, cuda::current_stream());
#else
  CONVNET_CHECK(false, "device memory in a build without the GPU backend");
  return t;
#endif
}

}  // namespace convnet
