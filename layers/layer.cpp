#include "layers/layer.h"
#ifdef CONVNET_HAVE_CUDA
#include "core/cuda/check.h"
#include "core/cuda/runtime.h"
#include "layers/cuda/kernels.h"
#endif

#include <omp.h>

#include <cmath>
#include <cstring>

namespace convnet {

void check_shape(const std::string& layer, const char* tensor_name, const Shape& actual,
                 const Shape& expected) {
  CONVNET_CHECK(actual == expected, "layer ", layer, ": ", tensor_name, " has shape ", actual,
                ", expected ", expected);
}

void check_tensor(const std::string& layer, const char* tensor_name, const Tensor& tensor,
                  const Shape& expected, Strides strides) {
  CONVNET_CHECK(tensor.defined(), "layer ", layer, ": ", tensor_name, " is missing");
  // bf16 / f16 activations exist on the GPU only (mixed precision); GPU
  // layers check the type against the one their descriptors were built for.
  CONVNET_CHECK(tensor.dtype() == DType::f32 || tensor.device() == Device::cuda, "layer ", layer,
                ": ", tensor_name, " is ", to_string(tensor.dtype()), ", expected f32");
  check_shape(layer, tensor_name, tensor.shape(), expected);
  CONVNET_CHECK(strides == Strides::any || tensor.is_contiguous(), "layer ", layer, ": ",
                tensor_name, " of shape ", tensor.shape(), " must be contiguous");
}

void check_tensor(const std::string& layer, const char* tensor_name, const Tensor& tensor,
                  const Shape& expected, Layout layout) {
  if (layout == Layout::nchw) return check_tensor(layer, tensor_name, tensor, expected);
  check_tensor(layer, tensor_name, tensor, expected, Strides::any);
  CONVNET_CHECK(tensor.layout() == layout, "layer ", layer, ": ", tensor_name, " has layout ",
                to_string(tensor.layout()), ", expected ", to_string(layout));
  CONVNET_CHECK(tensor.is_dense(), "layer ", layer, ": ", tensor_name, " of shape ", tensor.shape(),
                " must be dense ", to_string(layout));
}

void check_layout(const std::string& layer, const Shape& shape, Layout layout) {
  CONVNET_CHECK(layout != Layout::nchw8c || (shape.rank() == 4 && shape[1] % 8 == 0), "layer ",
                layer, ": layout nchw8c needs (N, C, H, W) with C a multiple of 8, got ", shape);
  CONVNET_CHECK(layout != Layout::nhwc || shape.rank() == 4, "layer ", layer,
                ": layout nhwc needs (N, C, H, W), got ", shape);
}

namespace {

// Calls fn(dst_ptr, src_ptr, count) over matching contiguous runs of the last dimension.
template <typename Fn>
void for_each_row(const Tensor& dst, const Tensor& src, Fn fn) {
  CONVNET_CHECK(dst.shape() == src.shape(), "gradient shape ", src.shape(), " into ", dst.shape());
  float* d = dst.data<float>();
  const float* s = src.data<float>();
  CONVNET_CHECK(dst.layout() == src.layout(), "gradient of layout ", to_string(src.layout()),
                " into ", to_string(dst.layout()));
  // Dense tensors of one layout (nchw8c tensors are always dense) match element for element.
  if (dst.is_dense() && src.is_dense()) {
    fn(d, s, dst.numel());
    return;
  }
  const int r = dst.rank();
  CONVNET_CHECK(r >= 1 && dst.strides()[r - 1] == 1 && src.strides()[r - 1] == 1,
                "gradient copy needs unit stride in the last dimension");
  const int64_t row = dst.shape()[r - 1];
  const int64_t rows = dst.numel() / row;
#pragma omp parallel for
  for (int64_t k = 0; k < rows; ++k) {
    int64_t rest = k, dst_offset = 0, src_offset = 0;
    for (int i = r - 2; i >= 0; --i) {
      const int64_t idx = rest % dst.shape()[i];
      rest /= dst.shape()[i];
      dst_offset += idx * dst.strides()[i];
      src_offset += idx * src.strides()[i];
    }
    float* dp = d + dst_offset;
    const float* sp = s + src_offset;
    fn.row(dp, sp, row);
  }
}

struct Copy {
  void operator()(float* d, const float* s, int64_t n) const {
#pragma omp parallel for simd
    for (int64_t i = 0; i < n; ++i) d[i] = s[i];
  }
  void row(float* d, const float* s, int64_t n) const { std::memcpy(d, s, n * sizeof(float)); }
};

struct Add {
  void operator()(float* d, const float* s, int64_t n) const {
#pragma omp parallel for simd
    for (int64_t i = 0; i < n; ++i) d[i] += s[i];
  }
  void row(float* d, const float* s, int64_t n) const {
    for (int64_t i = 0; i < n; ++i) d[i] += s[i];
  }
};

}  // namespace

void add_into(const Tensor& dst, const Tensor& src) {
#ifdef CONVNET_HAVE_CUDA
  if (dst.device() == Device::cuda) return write_gradient_cuda(dst, src, true);
#endif
  for_each_row(dst, src, Add{});
}

void scale_in_place(const Tensor& t, float factor) {
  CONVNET_CHECK(t.is_contiguous(), "scale_in_place of a non-contiguous tensor");
#ifdef CONVNET_HAVE_CUDA
  if (t.device() == Device::cuda)
    return cuda::scale(t.data<float>(), t.numel(), factor, cuda::current_stream());
#endif
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] *= factor;
}

bool all_finite(Context& context, const Tensor& t) {
  CONVNET_CHECK(t.is_contiguous(), "all_finite of a non-contiguous tensor");
#ifdef CONVNET_HAVE_CUDA
  if (t.device() == Device::cuda) {
    cudaStream_t stream = context.gpu().stream;
    auto* flag = static_cast<int32_t*>(context.scratch(Scratch::discarded, sizeof(int32_t)));
    CONVNET_CUDA(cudaMemsetAsync(flag, 0, sizeof(int32_t), stream));
    cuda::flag_nonfinite(t.data<float>(), t.numel(), flag, stream);
    int32_t found = 0;
    CONVNET_CUDA(cudaMemcpyAsync(&found, flag, sizeof(int32_t), cudaMemcpyDeviceToHost, stream));
    CONVNET_CUDA(cudaStreamSynchronize(stream));
    return found == 0;
  }
#endif
  (void)context;
  const float* p = t.data<float>();
  int64_t bad = 0;
#pragma omp parallel for reduction(+ : bad)
  for (int64_t i = 0; i < t.numel(); ++i) bad += std::isfinite(p[i]) ? 0 : 1;
  return bad == 0;
}

void write_gradient(const Tensor& dst, const Tensor& src, GradMode mode) {
#ifdef CONVNET_HAVE_CUDA
  if (dst.device() == Device::cuda)
    return write_gradient_cuda(dst, src, mode == GradMode::accumulate);
#endif
  if (mode == GradMode::accumulate)
    for_each_row(dst, src, Add{});
  else
    for_each_row(dst, src, Copy{});
}

}  // namespace convnet
