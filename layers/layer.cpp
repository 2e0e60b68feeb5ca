#include "layers/layer.h"
#ifdef CONVNET_HAVE_CUDA
#include "core/cuda/check.h"
#include "core/cuda/runtime.h"
#include "layers/cuda/kernels.h"
#endif

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/bf16.h"
#include "core/onednn.h"

namespace convnet {

void check_shape(const std::string& layer, const char* tensor_name, const Shape& actual,
                 const Shape& expected) {
  CONVNET_CHECK(actual == expected, "layer ", layer, ": ", tensor_name, " has shape ", actual,
                ", expected ", expected);
}

void check_tensor(const std::string& layer, const char* tensor_name, const Tensor& tensor,
                  const Shape& expected, Strides strides) {
  CONVNET_CHECK(tensor.defined(), "layer ", layer, ": ", tensor_name, " is missing");
  // bf16 / f16 activations are mixed precision (f16 on the GPU only); layers
  // check the type against the one their primitives or descriptors were built for.
  CONVNET_CHECK(tensor.dtype() != DType::f16 || tensor.device() == Device::cuda, "layer ", layer,
                ": ", tensor_name, " is f16, which the CPU backend does not compute in");
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
  CONVNET_CHECK(!is_blocked(layout) || shape.rank() == 4, "layer ", layer, ": layout ",
                to_string(layout), " needs (N, C, H, W), got ", shape);
  CONVNET_CHECK(layout != Layout::nhwc || shape.rank() == 4, "layer ", layer,
                ": layout nhwc needs (N, C, H, W), got ", shape);
}

namespace {

// Calls fn(dst_element, src_element) for every element of two f32 tensors
// (and every padding lane of dense blocked ones), running along the innermost
// dimension.
template <typename Fn>
void for_each_row(const Tensor& dst, const Tensor& src, Fn fn) {
  CONVNET_CHECK(dst.shape() == src.shape(), "gradient shape ", src.shape(), " into ", dst.shape());
  float* d = dst.data<float>();
  const float* s = src.data<float>();
  CONVNET_CHECK(dst.layout() == src.layout(), "gradient of layout ", to_string(src.layout()),
                " into ", to_string(dst.layout()));
  // Dense tensors of one layout (blocked tensors are always dense) match element
  // for element, the blocks' zero lanes included (0 + 0 and copies keep them zero).
  if (dst.is_dense() && src.is_dense()) {
    const int64_t n = dst.storage_numel();
#pragma omp parallel for simd
    for (int64_t i = 0; i < n; ++i) fn(d[i], s[i]);
    return;
  }
  // Rows run along the last dimension, or along C for channels-last (N, H, W, C).
  const int r = dst.rank();
  CONVNET_CHECK(r >= 1 && r <= 8, "gradient copy of a rank-", r, " tensor");
  int order[8] = {0, 1, 2, 3, 4, 5, 6, 7};  // the dimensions, outermost first
  if (dst.layout() == Layout::nhwc) order[1] = 2, order[2] = 3, order[3] = 1;
  const int last = order[r - 1];
  CONVNET_CHECK(dst.strides()[last] == 1 && src.strides()[last] == 1,
                "gradient copy needs unit stride in the innermost dimension");
  const int64_t row = dst.shape()[last];
  const int64_t rows = dst.numel() / row;
#pragma omp parallel for
  for (int64_t k = 0; k < rows; ++k) {
    int64_t rest = k, dst_offset = 0, src_offset = 0;
    for (int i = r - 2; i >= 0; --i) {
      const int dim = order[i];
      const int64_t idx = rest % dst.shape()[dim];
      rest /= dst.shape()[dim];
      dst_offset += idx * dst.strides()[dim];
      src_offset += idx * src.strides()[dim];
    }
    float* dp = d + dst_offset;
    const float* sp = s + src_offset;
    for (int64_t i = 0; i < row; ++i) fn(dp[i], sp[i]);
  }
}

// dst = src or dst += src on the host, for f32 and bf16 on either side:
// oneDNN's reorder when bf16 is involved (vectorized conversions), else loops.
void write_gradient_host(const Tensor& dst, const Tensor& src, bool accumulate) {
  CONVNET_CHECK(dst.shape() == src.shape(), "gradient shape ", src.shape(), " into ", dst.shape());
  CONVNET_CHECK(dst.layout() == src.layout(), "gradient of layout ", to_string(src.layout()),
                " into ", to_string(dst.layout()));
  if (dst.dtype() != DType::f32 || src.dtype() != DType::f32)
    return onednn_copy(dst, src, accumulate);
  if (accumulate)
    for_each_row(dst, src, [](float& d, float s) { d += s; });
  else
    for_each_row(dst, src, [](float& d, float s) { d = s; });
}

}  // namespace

void add_into(const Tensor& dst, const Tensor& src) {
#ifdef CONVNET_HAVE_CUDA
  if (dst.device() == Device::cuda) return write_gradient_cuda(dst, src, true);
#endif
  write_gradient_host(dst, src, true);
}

namespace {

// write_channels for the blocked layouts, B channels per block. Element
// (n, c, p) lies at n * batch_stride + (c / B) * hw * B + p * B + c % B.
// T is the element type of both.
template <typename T>
void write_blocked_channels(const Tensor& dst, int64_t dst_begin, const Tensor& src,
                            int64_t src_begin, int64_t count, bool accumulate) {
  const int64_t n = dst.shape()[0], hw = dst.shape()[2] * dst.shape()[3];
  const int64_t B = channel_block(dst.layout());
  const int64_t dst_batch = dst.strides()[0], src_batch = src.strides()[0];
  T* d = dst.data<T>();
  const T* s = src.data<T>();
  const auto sum = [](T a, T b) { return from_f32<T>(to_f32(a) + to_f32(b)); };
  if (dst_begin % B == 0 && src_begin % B == 0) {  // whole blocks, then a partial one
    const int64_t blocks = (count + B - 1) / B;
#pragma omp parallel for collapse(2)
    for (int64_t i = 0; i < n; ++i)
      for (int64_t b = 0; b < blocks; ++b) {
        T* dp = d + i * dst_batch + (dst_begin / B + b) * hw * B;
        const T* sp = s + i * src_batch + (src_begin / B + b) * hw * B;
        const int64_t lanes = std::min<int64_t>(B, count - b * B);
        if (lanes == B && !accumulate) {
          std::memcpy(dp, sp, hw * B * sizeof(T));
        } else if (lanes == B) {
#pragma omp simd
          for (int64_t k = 0; k < hw * B; ++k) dp[k] = sum(dp[k], sp[k]);
        } else {
          for (int64_t p = 0; p < hw; ++p)
            for (int64_t l = 0; l < lanes; ++l)
              dp[p * B + l] = accumulate ? sum(dp[p * B + l], sp[p * B + l]) : sp[p * B + l];
        }
      }
  } else {  // channel by channel: each is a plane with a stride of B
#pragma omp parallel for collapse(2)
    for (int64_t i = 0; i < n; ++i)
      for (int64_t c = 0; c < count; ++c) {
        const int64_t dc = dst_begin + c, sc = src_begin + c;
        T* dp = d + i * dst_batch + (dc / B) * hw * B + dc % B;
        const T* sp = s + i * src_batch + (sc / B) * hw * B + sc % B;
        for (int64_t p = 0; p < hw; ++p)
          dp[p * B] = accumulate ? sum(dp[p * B], sp[p * B]) : sp[p * B];
      }
  }
  const int64_t channels = dst.shape()[1];
  if (dst_begin + count < channels || channels % B == 0) return;
  // The range ends at dst's last channel: its block's remaining lanes are padding.
  for (int64_t i = 0; i < n; ++i) {
    T* dp = d + i * dst_batch + (channels / B) * hw * B;
    for (int64_t p = 0; p < hw; ++p)
      for (int64_t l = channels % B; l < B; ++l) dp[p * B + l] = from_f32<T>(0.0f);
  }
}

}  // namespace

void write_channels(const Tensor& dst, int64_t dst_begin, const Tensor& src, int64_t src_begin,
                    int64_t count, GradMode mode) {
  CONVNET_CHECK(dst.rank() == 4 && src.rank() == 4 && dst.layout() == src.layout() &&
                    dst.shape()[0] == src.shape()[0] && dst.shape()[2] == src.shape()[2] &&
                    dst.shape()[3] == src.shape()[3],
                "write_channels: ", to_string(src.layout()), " ", src.shape(), " into ",
                to_string(dst.layout()), " ", dst.shape());
  CONVNET_CHECK(count > 0 && dst_begin >= 0 && src_begin >= 0 &&
                    dst_begin + count <= dst.shape()[1] && src_begin + count <= src.shape()[1],
                "write_channels: ", count, " channels from ", src_begin, " of ", src.shape(),
                " to ", dst_begin, " of ", dst.shape());
  if (!is_blocked(dst.layout()))
    return write_gradient(dst.slice(1, dst_begin, dst_begin + count),
                          src.slice(1, src_begin, src_begin + count), mode);
  CONVNET_CHECK(dst.device() == Device::cpu && src.device() == Device::cpu,
                "write_channels: ", to_string(dst.layout()), " is a host layout");
  CONVNET_CHECK(dst.dtype() == src.dtype(), "write_channels: ", to_string(src.dtype()), " into ",
                to_string(dst.dtype()));
  with_host_type(dst.dtype(), [&](auto type) {
    write_blocked_channels<decltype(type)>(dst, dst_begin, src, src_begin, count,
                                           mode == GradMode::accumulate);
  });
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

void write_scaled(const Tensor& dst, const Tensor& src, float factor, GradMode mode) {
  CONVNET_CHECK(dst.shape() == src.shape() && dst.layout() == src.layout() &&
                    dst.dtype() == src.dtype() && dst.is_dense() && src.is_dense(),
                "write_scaled between tensors of other shapes, layouts or types");
  const bool accumulate = mode == GradMode::accumulate;
  const int64_t n = dst.storage_numel();
#ifdef CONVNET_HAVE_CUDA
  if (dst.device() == Device::cuda)
    return cuda::scale_copy(dst.dtype(), dst.raw_data(), src.raw_data(), n, factor, accumulate,
                            cuda::current_stream());
#endif
  with_host_type(dst.dtype(), [&](auto v) {
    using T = decltype(v);
    T* d = static_cast<T*>(dst.raw_data());
    const T* s = static_cast<const T*>(src.raw_data());
    for (int64_t i = 0; i < n; ++i)
      d[i] = from_f32<T>(factor * to_f32(s[i]) + (accumulate ? to_f32(d[i]) : 0.0f));
  });
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
  write_gradient_host(dst, src, mode == GradMode::accumulate);
}

}  // namespace convnet
