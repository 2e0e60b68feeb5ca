// Small helpers shared by the GPU layers: owned cuDNN descriptors and the
// conversions from convnet's shapes and tensors. Host-only code (the layers
// themselves are plain C++ that call cuDNN and the kernels of kernels.h).
#pragma once

#include <cudnn.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "core/context.h"
#include "core/cuda/check.h"
#include "core/cuda/runtime.h"
#include "core/tensor.h"
#include "layers/cuda/kernels.h"

namespace convnet::cuda {

// cuDNN's name for an element type.
cudnnDataType_t cudnn_type(DType dtype);

// True when cuDNN refused a call as "not supported" or "bad parameter" for
// this type or shape (cuDNN 9's detailed codes, e.g. NOT_SUPPORTED_DATA_TYPE
// 3003, included): the caller may take another path. Other codes are errors.
inline bool refused(cudnnStatus_t status) {
  return CUDNN_STATUS_CATEGORY(status) == CUDNN_STATUS_NOT_SUPPORTED ||
         CUDNN_STATUS_CATEGORY(status) == CUDNN_STATUS_BAD_PARAM;
}

// An owned cudnnTensorDescriptor_t for a 4-D tensor (f32 unless given).
class TensorDescriptor {
 public:
  TensorDescriptor() { CONVNET_CUDNN(cudnnCreateTensorDescriptor(&desc_)); }
  ~TensorDescriptor() { cudnnDestroyTensorDescriptor(desc_); }
  TensorDescriptor(const TensorDescriptor&) = delete;
  TensorDescriptor& operator=(const TensorDescriptor&) = delete;
  // Dense NCHW of a rank-4 shape (or (N, C) as (N, C, 1, 1), (C) as (1, C, 1, 1)).
  void set(const Shape& shape, DType dtype = DType::f32);
  // Explicit element strides, (N, C, H, W) order.
  void set(const Shape& shape, const std::vector<int64_t>& strides, DType dtype = DType::f32);
  // A dense rank-4 tensor of a GPU layout (nchw or nhwc).
  void set(const Shape& shape, Layout layout, DType dtype = DType::f32);
  cudnnTensorDescriptor_t get() const { return desc_; }

 private:
  cudnnTensorDescriptor_t desc_ = nullptr;
};

// An owned cuDNN descriptor of another kind (filter, convolution): created
// with its owner, destroyed with it.
template <typename Handle, cudnnStatus_t (*create)(Handle*), cudnnStatus_t (*destroy)(Handle)>
class Descriptor {
 public:
  Descriptor() { CONVNET_CUDNN(create(&handle_)); }
  ~Descriptor() { destroy(handle_); }
  Descriptor(const Descriptor&) = delete;
  Descriptor& operator=(const Descriptor&) = delete;
  Handle get() const { return handle_; }

 private:
  Handle handle_ = nullptr;
};
using FilterDescriptor =
    Descriptor<cudnnFilterDescriptor_t, cudnnCreateFilterDescriptor, cudnnDestroyFilterDescriptor>;
using ConvolutionDescriptor =
    Descriptor<cudnnConvolutionDescriptor_t, cudnnCreateConvolutionDescriptor,
               cudnnDestroyConvolutionDescriptor>;
using ActivationDescriptor =
    Descriptor<cudnnActivationDescriptor_t, cudnnCreateActivationDescriptor,
               cudnnDestroyActivationDescriptor>;

// A parameter, statistic or optimizer tensor: f32 device memory (null when undefined).
inline float* device_ptr(const Tensor& t) {
  CONVNET_CHECK(!t.defined() || t.device() == Device::cuda,
                "a GPU layer was given a tensor in host memory");
  return t.defined() ? t.data<float>() : nullptr;
}

// An activation or activation gradient of any element type (kernels.h takes
// its dtype alongside); null when undefined.
inline void* act(const Tensor& t) {
  CONVNET_CHECK(!t.defined() || t.device() == Device::cuda,
                "a GPU layer was given a tensor in host memory");
  return t.defined() ? t.raw_data() : nullptr;
}

// Throws unless every defined tensor has the element type `dtype` (the
// layer's activation type, fixed when its cuDNN descriptors were built).
void require_dtype(const std::string& layer, DType dtype, std::initializer_list<const Tensor*> ts);

inline cudaStream_t stream_of(Context& context) { return context.gpu().stream; }

// Throws unless `layout` is one the GPU backend runs (nchw, nhwc).
void require_gpu_layout(const std::string& layer, Layout layout);

// The Strided4 description of dst (+)= src for two tensors of one shape (rank <= 4).
Strided4 strided4(const Tensor& dst, const Tensor& src);
// dst (+)= src on `stream` for two device tensors of one shape, any layouts,
// strides and element types (strided_copy of kernels.h).
void copy_tensor(const Tensor& dst, const Tensor& src, bool accumulate, cudaStream_t stream);

// The pooling window from input (N, C, H, W) to output (N, C, H_out, W_out).
Window2d pool_window(const Shape& in, const Shape& out, int64_t kernel, int64_t stride,
                     int64_t padding, Layout layout);

}  // namespace convnet::cuda
