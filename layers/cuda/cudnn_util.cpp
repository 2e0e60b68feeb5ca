#include "layers/cuda/cudnn_util.h"

namespace convnet::cuda {
namespace {
std::vector<int> to_nchw(const Shape& shape) {
  CONVNET_CHECK(shape.rank() >= 1 && shape.rank() <= 4, "a cuDNN tensor of shape ", shape);
  if (shape.rank() == 1) return {1, static_cast<int>(shape[0]), 1, 1};
  std::vector<int> dims(4, 1);
  for (int i = 0; i < shape.rank(); ++i) dims[i] = static_cast<int>(shape[i]);
  return dims;
}
}  // namespace

cudnnDataType_t cudnn_type(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return CUDNN_DATA_FLOAT;
    case DType::bf16:
      return CUDNN_DATA_BFLOAT16;
    case DType::f16:
      return CUDNN_DATA_HALF;
  }
  CONVNET_CHECK(false, "unknown element type");
  return CUDNN_DATA_FLOAT;
}

void TensorDescriptor::set(const Shape& shape, DType dtype) {
  const std::vector<int> d = to_nchw(shape);
  CONVNET_CUDNN(cudnnSetTensor4dDescriptor(desc_, CUDNN_TENSOR_NCHW, cudnn_type(dtype), d[0], d[1],
                                           d[2], d[3]));
}

void TensorDescriptor::set(const Shape& shape, const std::vector<int64_t>& strides, DType dtype) {
  CONVNET_CHECK(shape.rank() == 4 && strides.size() == 4, "strided cuDNN tensor of shape ", shape);
  CONVNET_CUDNN(cudnnSetTensor4dDescriptorEx(
      desc_, cudnn_type(dtype), static_cast<int>(shape[0]), static_cast<int>(shape[1]),
      static_cast<int>(shape[2]), static_cast<int>(shape[3]), static_cast<int>(strides[0]),
      static_cast<int>(strides[1]), static_cast<int>(strides[2]), static_cast<int>(strides[3])));
}

void TensorDescriptor::set(const Shape& shape, Layout layout, DType dtype) {
  if (layout == Layout::nhwc) return set(shape, channels_last_strides(shape), dtype);
  set(shape, dtype);
}

void require_dtype(const std::string& layer, DType dtype, std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts)
    CONVNET_CHECK(!t->defined() || t->dtype() == dtype, "layer ", layer, ": a ",
                  to_string(t->dtype()), " tensor given to a layer built for ", to_string(dtype),
                  " activations");
}

void require_gpu_layout(const std::string& layer, Layout layout) {
  CONVNET_CHECK(layout == Layout::nchw || layout == Layout::nhwc, "layer ", layer,
                ": the GPU backend runs nchw or nhwc, not ", to_string(layout));
}

Strided4 strided4(const Tensor& dst, const Tensor& src) {
  CONVNET_CHECK(dst.shape() == src.shape() && dst.rank() <= 4, "strided copy of ", src.shape(),
                " into ", dst.shape());
  CONVNET_CHECK(!is_blocked(dst.layout()) && !is_blocked(src.layout()),
                "GPU tensors are nchw or nhwc");
  Strided4 l{};
  const int pad = 4 - dst.rank();
  for (int k = 0; k < 4; ++k) {
    const bool real = k >= pad;
    l.shape[k] = real ? dst.dim(k - pad) : 1;
    l.dst_strides[k] = real ? dst.strides()[k - pad] : 0;
    l.src_strides[k] = real ? src.strides()[k - pad] : 0;
  }
  return l;
}

void copy_tensor(const Tensor& dst, const Tensor& src, bool accumulate, cudaStream_t stream) {
  strided_copy(dst.dtype(), act(dst), src.dtype(), act(src), strided4(dst, src), accumulate,
               stream);
}

Window2d pool_window(const Shape& in, const Shape& out, int64_t kernel, int64_t stride,
                     int64_t padding, Layout layout) {
  return Window2d{in[0],  in[1],  in[2],  in[3],   out[2],
                  out[3], kernel, stride, padding, layout == Layout::nhwc};
}

}  // namespace convnet::cuda

namespace convnet {

void write_gradient_cuda(const Tensor& dst, const Tensor& src, bool accumulate) {
  cuda::copy_tensor(dst, src, accumulate, cuda::current_stream());
}

}  // namespace convnet
