// Launchers for the kernels of kernels.h. The arithmetic is in kernel_math.h;
// here each function runs in a grid-stride loop over its outputs. Per-channel
// sums use a block reduction: one block per channel (N*H*W terms each) for
// NCHW and bias gradients, tiles of 32 channels x row groups with partial
// sums for channels-last batch norm. Each public function dispatches on the
// activations' DType to a template instantiated for float, __nv_bfloat16 and
// __half. This file also compiles as host C++ for tests/cuda_on_host, which
// runs every kernel here on the CPU (CI) against double-precision loops.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "core/cuda/check.h"
#include "core/error.h"
#include "layers/cuda/kernels.h"

// CONVNET_LAUNCH(name, kernel, grid, block, stream, args...) is
// kernel<<<grid, block, 0, stream>>>(args...) with a launch check naming
// `name`. Compiled by a host compiler with CONVNET_CUDA_ON_HOST (the test
// harness tests/cuda_on_host), it runs the kernel on the host instead.
// CONVNET_SHARED(type, name, extents) declares shared memory: __shared__
// type name extents (on the host, poisoned function statics).
#ifdef CONVNET_CUDA_ON_HOST
#define CONVNET_SHARED(type, name, ...) CONVNET_ON_HOST_SHARED(type, name, __VA_ARGS__)
#define CONVNET_LAUNCH(name, kernel, grid, block, stream, ...) \
  ((void)(stream), ::convnet::cuda_on_host::launch(name, grid, block, [&] { kernel(__VA_ARGS__); }))
#else
#define CONVNET_SHARED(type, name, ...) __shared__ type name __VA_ARGS__
#define CONVNET_LAUNCH(name, kernel, grid, block, stream, ...) \
  do {                                                         \
    kernel<<<grid, block, 0, stream>>>(__VA_ARGS__);           \
    CONVNET_CUDA_LAUNCHED(name);                               \
  } while (0)
#endif

namespace convnet::cuda {
namespace {

constexpr int kThreads = 256;

// Blocks for a grid-stride loop over n elements (capped; the loop covers the rest).
unsigned blocks_for(int64_t n) {
  return static_cast<unsigned>(
      std::max<int64_t>(1, std::min<int64_t>((n + kThreads - 1) / kThreads, 65535 * 8)));
}

template <typename F>
__global__ void for_each_kernel(int64_t n, F f) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    f(i);
}

// f(i) for i in [0, n) on `stream`.
template <typename F>
void for_each(const char* name, int64_t n, cudaStream_t stream, F f) {
  if (n <= 0) return;
  CONVNET_LAUNCH(name, for_each_kernel, blocks_for(n), kThreads, stream, n, f);
}

// Sum over the block (blockDim.x == kThreads); the result is valid in thread 0.
__device__ float block_sum(float value) {
  CONVNET_SHARED(float, partial, [kThreads / 32]);
  for (int offset = 16; offset > 0; offset /= 2)
    value += __shfl_down_sync(0xffffffffu, value, offset);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) partial[warp] = value;
  __syncthreads();
  value = threadIdx.x < kThreads / 32 ? partial[threadIdx.x] : 0.0f;
  if (warp == 0)
    for (int offset = 16; offset > 0; offset /= 2)
      value += __shfl_down_sync(0xffffffffu, value, offset);
  __syncthreads();  // partial may be reused by a following call
  return value;
}

// One block per channel: dgamma += sum(dy * (x - mean)) * inv_std, dbeta += sum(dy).
template <typename T>
__global__ void batch_norm_fixed_sums_kernel(const T* x, const T* dy, const float* mean,
                                             const float* inv_std, float* dgamma, float* dbeta,
                                             int64_t n, int64_t c, int64_t hw, bool channels_last) {
  const int64_t ch = blockIdx.x;
  float sum_dy = 0.0f, sum_dy_xmu = 0.0f;
  for (int64_t j = threadIdx.x; j < n * hw; j += blockDim.x) {
    const int64_t i = math::plane_offset((j / hw) * c + ch, j % hw, c, hw, channels_last);
    const float g = math::load(dy[i]);
    sum_dy += g;
    sum_dy_xmu += g * (math::load(x[i]) - mean[ch]);
  }
  sum_dy = block_sum(sum_dy);
  sum_dy_xmu = block_sum(sum_dy_xmu);
  if (threadIdx.x == 0) {
    dgamma[ch] += sum_dy_xmu * inv_std[ch];
    dbeta[ch] += sum_dy;
  }
}

// One block per channel: the batch statistics of NCHW x (batch_norm_statistics).
template <typename T>
__global__ void batch_norm_statistics_kernel(const T* x, float* mean, float* inv_std,
                                             float* running_mean, float* running_var, int64_t n,
                                             int64_t c, int64_t hw, float eps, float momentum) {
  CONVNET_SHARED(float, broadcast, );
  const int64_t ch = blockIdx.x, count = n * hw;
  float sum = 0.0f;
  for (int64_t j = threadIdx.x; j < count; j += blockDim.x)
    sum += math::load(x[math::plane_offset((j / hw) * c + ch, j % hw, c, hw, false)]);
  sum = block_sum(sum);
  if (threadIdx.x == 0) broadcast = sum / static_cast<float>(count);
  __syncthreads();
  const float mu = broadcast;
  float squares = 0.0f;
  for (int64_t j = threadIdx.x; j < count; j += blockDim.x) {
    const float d = math::load(x[math::plane_offset((j / hw) * c + ch, j % hw, c, hw, false)]) - mu;
    squares += d * d;
  }
  squares = block_sum(squares);
  if (threadIdx.x == 0) {
    const float var = squares / static_cast<float>(count);
    mean[ch] = mu;
    inv_std[ch] = rsqrtf(var + eps);
    const float unbiased = count > 1 ? squares / static_cast<float>(count - 1) : var;
    running_mean[ch] = (1.0f - momentum) * running_mean[ch] + momentum * mu;
    running_var[ch] = (1.0f - momentum) * running_var[ch] + momentum * unbiased;
  }
}

// One block per channel: the backward through the batch statistics, NCHW.
template <typename T>
__global__ void batch_norm_backward_batch_kernel(const T* x, const T* dy, const float* mean,
                                                 const float* inv_std, const float* gamma, T* dx,
                                                 bool accumulate, float* dgamma, float* dbeta,
                                                 int64_t n, int64_t c, int64_t hw) {
  CONVNET_SHARED(float, sums, [2]);
  const int64_t ch = blockIdx.x, count = n * hw;
  const float mu = mean[ch], s = inv_std[ch];
  float sum_dy = 0.0f, sum_dy_xhat = 0.0f;
  for (int64_t j = threadIdx.x; j < count; j += blockDim.x) {
    const int64_t i = math::plane_offset((j / hw) * c + ch, j % hw, c, hw, false);
    const float g = math::load(dy[i]);
    sum_dy += g;
    sum_dy_xhat += g * (math::load(x[i]) - mu) * s;
  }
  sum_dy = block_sum(sum_dy);
  sum_dy_xhat = block_sum(sum_dy_xhat);
  if (threadIdx.x == 0) {
    sums[0] = sum_dy;
    sums[1] = sum_dy_xhat;
    dgamma[ch] += sum_dy_xhat;
    dbeta[ch] += sum_dy;
  }
  __syncthreads();
  if (dx == nullptr) return;
  const float mean_dy = sums[0] / static_cast<float>(count);
  const float mean_dy_xhat = sums[1] / static_cast<float>(count);
  const float scale = gamma[ch] * s;
  for (int64_t j = threadIdx.x; j < count; j += blockDim.x) {
    const int64_t i = math::plane_offset((j / hw) * c + ch, j % hw, c, hw, false);
    const float xhat = (math::load(x[i]) - mu) * s;
    math::store(dx + i, scale * (math::load(dy[i]) - mean_dy - xhat * mean_dy_xhat), accumulate);
  }
}

// One block per channel: sums[ch] += sum of dy over (N, HW).
template <typename T>
__global__ void channel_sums_kernel(const T* dy, float* sums, int64_t n, int64_t c, int64_t hw,
                                    bool channels_last) {
  const int64_t ch = blockIdx.x;
  float sum = 0.0f;
  for (int64_t j = threadIdx.x; j < n * hw; j += blockDim.x)
    sum += math::load(dy[math::plane_offset((j / hw) * c + ch, j % hw, c, hw, channels_last)]);
  sum = block_sum(sum);
  if (threadIdx.x == 0) sums[ch] += sum;
}

// ---- Per-channel sums of channels-last (NHWC) data: rows of c channels.
// A block covers 32 channels (a warp reads 32 consecutive values of a row)
// and one group of rows; each block writes two partial sums per channel,
// which a second pass adds in group order (deterministic).
constexpr int kTileChannels = 32, kTileRows = 8;
constexpr int64_t kMaxPartialBlocks = 2048;  // channel tiles x row groups

int64_t channel_tiles(int64_t c) { return (c + kTileChannels - 1) / kTileChannels; }

int64_t row_groups(int64_t rows, int64_t c) {
  return std::max<int64_t>(
      1, std::min<int64_t>((rows + 255) / 256, kMaxPartialBlocks / channel_tiles(c)));
}

// partials[(g * 2 + k) * c + ch] = sum over row group g of component k of
// f(i, ch), i = row * c + ch (f returns a float2).
template <typename F>
__global__ void channels_last_partials_kernel(int64_t rows, int64_t c, F f, float* partials) {
  CONVNET_SHARED(float, tile, [2][kTileRows][kTileChannels + 1]);
  const int64_t ch = blockIdx.x * static_cast<int64_t>(kTileChannels) + threadIdx.x;
  float a = 0.0f, b = 0.0f;
  if (ch < c)
    for (int64_t r = blockIdx.y * static_cast<int64_t>(kTileRows) + threadIdx.y; r < rows;
         r += static_cast<int64_t>(kTileRows) * gridDim.y) {
      const float2 v = f(r * c + ch, ch);
      a += v.x;
      b += v.y;
    }
  tile[0][threadIdx.y][threadIdx.x] = a;
  tile[1][threadIdx.y][threadIdx.x] = b;
  __syncthreads();
  if (threadIdx.y < 2 && ch < c) {
    float sum = 0.0f;
    for (int k = 0; k < kTileRows; ++k) sum += tile[threadIdx.y][k][threadIdx.x];
    partials[(blockIdx.y * 2 + threadIdx.y) * c + ch] = sum;
  }
}

// Launches the partial sums; returns the number of row groups.
template <typename F>
int64_t channels_last_partials(const char* name, int64_t rows, int64_t c, F f, float* partials,
                               cudaStream_t stream) {
  const int64_t groups = row_groups(rows, c);
  const dim3 grid(static_cast<unsigned>(channel_tiles(c)), static_cast<unsigned>(groups));
  CONVNET_LAUNCH(name, channels_last_partials_kernel, grid, dim3(kTileChannels, kTileRows), stream,
                 rows, c, f, partials);
  return groups;
}

// The two sums of channel ch over every row group, in group order.
__device__ float2 total_of(const float* partials, int64_t groups, int64_t c, int64_t ch) {
  float2 sum = make_float2(0.0f, 0.0f);
  for (int64_t g = 0; g < groups; ++g) {
    sum.x += partials[(g * 2) * c + ch];
    sum.y += partials[(g * 2 + 1) * c + ch];
  }
  return sum;
}

template <typename T>
void batch_norm_statistics_channels_last(const T* x, float* mean, float* inv_std,
                                         float* running_mean, float* running_var, int64_t rows,
                                         int64_t c, float eps, float momentum, float* partials,
                                         cudaStream_t stream) {
  const float count = static_cast<float>(rows);
  int64_t groups = channels_last_partials(
      "batch_norm_sums", rows, c,
      [=] __device__(int64_t i, int64_t) { return make_float2(math::load(x[i]), 0.0f); }, partials,
      stream);
  for_each("batch_norm_mean", c, stream,
           [=] __device__(int64_t ch) { mean[ch] = total_of(partials, groups, c, ch).x / count; });
  groups = channels_last_partials(
      "batch_norm_squares", rows, c,
      [=] __device__(int64_t i, int64_t ch) {
        const float d = math::load(x[i]) - mean[ch];
        return make_float2(d * d, 0.0f);
      },
      partials, stream);
  for_each("batch_norm_variance", c, stream, [=] __device__(int64_t ch) {
    const float squares = total_of(partials, groups, c, ch).x;
    const float var = squares / count;
    inv_std[ch] = rsqrtf(var + eps);
    const float unbiased = count > 1.0f ? squares / (count - 1.0f) : var;
    running_mean[ch] = (1.0f - momentum) * running_mean[ch] + momentum * mean[ch];
    running_var[ch] = (1.0f - momentum) * running_var[ch] + momentum * unbiased;
  });
}

template <typename T>
void batch_norm_backward_batch_channels_last(const T* x, const T* dy, const float* mean,
                                             const float* inv_std, const float* gamma, T* dx,
                                             bool accumulate, float* dgamma, float* dbeta,
                                             int64_t rows, int64_t c, float* scratch,
                                             cudaStream_t stream) {
  float* means = scratch + 2 * kMaxPartialBlocks * kTileChannels;  // (2, c) after the partials
  const int64_t groups = channels_last_partials(
      "batch_norm_backward_sums", rows, c,
      [=] __device__(int64_t i, int64_t ch) {
        const float g = math::load(dy[i]);
        return make_float2(g, g * (math::load(x[i]) - mean[ch]) * inv_std[ch]);
      },
      scratch, stream);
  const float count = static_cast<float>(rows);
  for_each("batch_norm_backward_totals", c, stream, [=] __device__(int64_t ch) {
    const float2 sum = total_of(scratch, groups, c, ch);
    dgamma[ch] += sum.y;
    dbeta[ch] += sum.x;
    means[ch] = sum.x / count;
    means[c + ch] = sum.y / count;
  });
  if (dx == nullptr) return;
  for_each("batch_norm_backward_dx", rows * c, stream, [=] __device__(int64_t i) {
    const int64_t ch = i % c;
    const float s = inv_std[ch];
    const float xhat = (math::load(x[i]) - mean[ch]) * s;
    math::store(dx + i, gamma[ch] * s * (math::load(dy[i]) - means[ch] - xhat * means[c + ch]),
                accumulate);
  });
}

// One block: the metrics of accumulate_loss_metrics.
__global__ void loss_metrics_kernel(const float* row_loss, const float* logits,
                                    const int32_t* labels, int64_t n, int64_t k, double* metrics) {
  float sum = 0.0f, top1 = 0.0f, top5 = 0.0f, bad = 0.0f;
  for (int64_t r = threadIdx.x; r < n; r += blockDim.x) {
    const float loss = row_loss[r];
    if (isfinite(loss))
      sum += loss;
    else
      bad += 1.0f;
    const float* row = logits + r * k;
    top1 += math::label_in_top_k(row, k, labels[r], 1) ? 1.0f : 0.0f;
    top5 += math::label_in_top_k(row, k, labels[r], k < 5 ? k : 5) ? 1.0f : 0.0f;
  }
  sum = block_sum(sum);
  top1 = block_sum(top1);
  top5 = block_sum(top5);
  bad = block_sum(bad);
  if (threadIdx.x == 0) {
    metrics[0] += sum;
    metrics[1] += top1;
    metrics[2] += top5;
    metrics[3] += bad > 0.0f ? 1.0 : 0.0;
  }
}

// Calls fn(T{}) with T the C++ type of `dtype`.
template <typename Fn>
void with_type(DType dtype, Fn fn) {
  switch (dtype) {
    case DType::f32:
      return fn(float{});
    case DType::bf16:
      return fn(__nv_bfloat16{});
    case DType::f16:
      return fn(__half{});
  }
  CONVNET_CHECK(false, "unknown element type");
}

template <typename T>
const T* as(const void* p) {
  return static_cast<const T*>(p);
}
template <typename T>
T* as(void* p) {
  return static_cast<T*>(p);
}

template <typename D, typename S>
void strided_copy_t(D* dst, const S* src, const Strided4& l, bool accumulate, cudaStream_t stream) {
  const int64_t total = l.shape[0] * l.shape[1] * l.shape[2] * l.shape[3];
  for_each("strided_copy", total, stream,
           [=] __device__(int64_t i) { math::strided_copy(i, dst, src, l, accumulate); });
}

template <typename T>
void add_t(const T* a, const T* b, T* y, int64_t n, cudaStream_t stream) {
  for_each("add", n, stream,
           [=] __device__(int64_t i) { y[i] = T(math::load(a[i]) + math::load(b[i])); });
}

template <typename T>
void relu_forward_t(const T* x, T* y, int64_t n, cudaStream_t stream) {
  for_each("relu_forward", n, stream,
           [=] __device__(int64_t i) { y[i] = T(fmaxf(math::load(x[i]), 0.0f)); });
}

template <typename T>
void relu_backward_t(const T* y, const T* dy, T* dx, int64_t n, bool accumulate,
                     cudaStream_t stream) {
  for_each("relu_backward", n, stream, [=] __device__(int64_t i) {
    math::store(dx + i, math::load(y[i]) > 0.0f ? math::load(dy[i]) : 0.0f, accumulate);
  });
}

template <typename T>
void add_channel_bias_t(T* y, const float* bias, int64_t n, int64_t c, int64_t hw,
                        bool channels_last, cudaStream_t stream) {
  for_each("add_channel_bias", n * c * hw, stream, [=] __device__(int64_t i) {
    math::store(y + i, bias[math::channel_of(i, c, hw, channels_last)], true);
  });
}

template <typename T>
void batch_norm_apply_t(const T* x, const float* mean, const float* inv_std, const float* gamma,
                        const float* beta, T* y, int64_t n, int64_t c, int64_t hw,
                        bool channels_last, bool relu, cudaStream_t stream) {
  for_each("batch_norm_apply", n * c * hw, stream, [=] __device__(int64_t i) {
    const float v = math::batch_norm_value(x, mean, inv_std, gamma, beta, i, c, hw, channels_last);
    y[i] = T(relu ? fmaxf(v, 0.0f) : v);
  });
}

template <typename T>
void batch_norm_relu_mask_t(const T* x, const float* mean, const float* inv_std, const float* gamma,
                            const float* beta, const T* dy, T* masked, int64_t n, int64_t c,
                            int64_t hw, bool channels_last, cudaStream_t stream) {
  for_each("batch_norm_relu_mask", n * c * hw, stream, [=] __device__(int64_t i) {
    masked[i] =
        math::batch_norm_value(x, mean, inv_std, gamma, beta, i, c, hw, channels_last) > 0.0f
            ? dy[i]
            : T(0.0f);
  });
}

template <typename T>
void batch_norm_fixed_dx_t(const T* dy, const float* inv_std, const float* gamma, T* dx,
                           bool accumulate, int64_t n, int64_t c, int64_t hw, bool channels_last,
                           cudaStream_t stream) {
  for_each("batch_norm_fixed_dx", n * c * hw, stream, [=] __device__(int64_t i) {
    const int64_t ch = math::channel_of(i, c, hw, channels_last);
    math::store(dx + i, math::load(dy[i]) * gamma[ch] * inv_std[ch], accumulate);
  });
}

template <typename T>
void max_pool_forward_t(const T* x, T* y, int32_t* argmax, const Window2d& w, cudaStream_t stream) {
  for_each("max_pool_forward", w.n * w.c * w.out_h * w.out_w, stream,
           [=] __device__(int64_t i) { math::max_pool_forward(i, x, y, argmax, w); });
}

template <typename T>
void max_pool_backward_t(const T* dy, const int32_t* argmax, T* dx, bool accumulate,
                         const Window2d& w, cudaStream_t stream) {
  for_each("max_pool_backward", w.n * w.c * w.h * w.w, stream, [=] __device__(int64_t i) {
    math::max_pool_backward(i, dy, argmax, dx, accumulate, w);
  });
}

template <typename T>
void avg_pool_forward_t(const T* x, T* y, const Window2d& w, bool count_include_pad,
                        cudaStream_t stream) {
  for_each("avg_pool_forward", w.n * w.c * w.out_h * w.out_w, stream,
           [=] __device__(int64_t i) { math::avg_pool_forward(i, x, y, w, count_include_pad); });
}

template <typename T>
void avg_pool_backward_t(const T* dy, T* dx, bool accumulate, const Window2d& w,
                         bool count_include_pad, cudaStream_t stream) {
  for_each("avg_pool_backward", w.n * w.c * w.h * w.w, stream, [=] __device__(int64_t i) {
    math::avg_pool_backward(i, dy, dx, accumulate, w, count_include_pad);
  });
}

template <typename T>
void global_avg_pool_forward_t(const T* x, T* y, int64_t n, int64_t c, int64_t hw,
                               bool channels_last, cudaStream_t stream) {
  for_each("global_avg_pool_forward", n * c, stream, [=] __device__(int64_t p) {
    math::global_avg_pool_forward(p, x, y, c, hw, channels_last);
  });
}

template <typename T>
void global_avg_pool_backward_t(const T* dy, T* dx, int64_t n, int64_t c, int64_t hw,
                                bool channels_last, bool accumulate, cudaStream_t stream) {
  for_each("global_avg_pool_backward", n * c * hw, stream, [=] __device__(int64_t i) {
    math::global_avg_pool_backward(i, dy, dx, c, hw, channels_last, accumulate);
  });
}

template <typename T>
void channel_gate_forward_t(const T* x, const T* s, T* y, int64_t n, int64_t c, int64_t hw,
                            bool channels_last, cudaStream_t stream) {
  for_each("channel_gate_forward", n * c * hw, stream, [=] __device__(int64_t i) {
    math::channel_gate_forward(i, x, s, y, c, hw, channels_last);
  });
}

template <typename T>
void channel_gate_backward_t(const T* x, const T* s, const T* dy, T* dx, bool dx_accumulate, T* ds,
                             bool ds_accumulate, int64_t n, int64_t c, int64_t hw,
                             bool channels_last, cudaStream_t stream) {
  for_each("channel_gate_backward", n * c, stream, [=] __device__(int64_t p) {
    math::channel_gate_backward(p, x, s, dy, dx, dx_accumulate, ds, ds_accumulate, c, hw,
                                channels_last);
  });
}

}  // namespace

void strided_copy(DType dst_type, void* dst, DType src_type, const void* src, const Strided4& l,
                  bool accumulate, cudaStream_t stream) {
  with_type(dst_type, [&](auto d) {
    using D = decltype(d);
    with_type(src_type, [&](auto s) {
      using S = decltype(s);
      strided_copy_t(as<D>(dst), as<S>(src), l, accumulate, stream);
    });
  });
}

void scale(float* x, int64_t n, float factor, cudaStream_t stream) {
  for_each("scale", n, stream, [=] __device__(int64_t i) { x[i] *= factor; });
}

void add(DType t, const void* a, const void* b, void* y, int64_t n, cudaStream_t stream) {
  with_type(t, [&](auto v) {
    using T = decltype(v);
    add_t(as<T>(a), as<T>(b), as<T>(y), n, stream);
  });
}

void relu_forward(DType t, const void* x, void* y, int64_t n, cudaStream_t stream) {
  with_type(t, [&](auto v) {
    using T = decltype(v);
    relu_forward_t(as<T>(x), as<T>(y), n, stream);
  });
}

void relu_backward(DType t, const void* y, const void* dy, void* dx, int64_t n, bool accumulate,
                   cudaStream_t stream) {
  with_type(t, [&](auto v) {
    using T = decltype(v);
    relu_backward_t(as<T>(y), as<T>(dy), as<T>(dx), n, accumulate, stream);
  });
}

void add_channel_bias(DType t, void* y, const float* bias, int64_t n, int64_t c, int64_t hw,
                      bool channels_last, cudaStream_t stream) {
  with_type(t, [&](auto v) {
    using T = decltype(v);
    add_channel_bias_t(as<T>(y), bias, n, c, hw, channels_last, stream);
  });
}

void accumulate_channel_sums(DType t, const void* dy, float* sums, int64_t n, int64_t c, int64_t hw,
                             bool channels_last, cudaStream_t stream) {
  with_type(t, [&](auto v) {
    using T = decltype(v);
    CONVNET_LAUNCH("channel_sums", channel_sums_kernel<T>, static_cast<unsigned>(c), kThreads,
                   stream, as<T>(dy), sums, n, c, hw, channels_last);
  });
}

void batch_norm_apply(DType t, const void* x, const float* mean, const float* inv_std,
                      const float* gamma, const float* beta, void* y, int64_t n, int64_t c,
                      int64_t hw, bool channels_last, bool relu, cudaStream_t stream) {
  with_type(t, [&](auto v) {
    using T = decltype(v);
    batch_norm_apply_t(as<T>(x), mean, inv_std, gamma, beta, as<T>(y), n, c, hw, channels_last,
                       relu, stream);
  });
}

void batch_norm_relu_mask(DType t, const void* x, const float* mean, const float* inv_std,
                          const float* gamma, const float* beta, const void* dy, void* masked,
                          int64_t n, int64_t c, int64_t hw, bool channels_last,
                          cudaStream_t stream) {
  with_type(t, [&](auto v) {
    using T = decltype(v);
    batch_norm_relu_mask_t(as<T>(x), mean, inv_std, gamma, beta, as<T>(dy), as<T>(masked), n, c, hw,
                           channels_last, stream);
  });
}

void batch_norm_backward_fixed_stats(DType t, const void* x, const void* dy, const float* mean,
                                     const float* inv_std, const float* gamma, void* dx,
                                     bool accumulate, float* dgamma, float* dbeta, int64_t n,
                                     int64_t c, int64_t hw, bool channels_last,
                                     cudaStream_t stream) {
  with_type(t, [&](auto v) {
    using T = decltype(v);
    CONVNET_LAUNCH("batch_norm_fixed_sums", batch_norm_fixed_sums_kernel<T>,
                   static_cast<unsigned>(c), kThreads, stream, as<T>(x), as<T>(dy), mean, inv_std,
                   dgamma, dbeta, n, c, hw, channels_last);
    if (dx != nullptr)
      batch_norm_fixed_dx_t(as<T>(dy), inv_std, gamma, as<T>(dx), accumulate, n, c, hw,
                            channels_last, stream);
  });
}

int64_t batch_norm_scratch_floats(int64_t c) {
  CONVNET_CHECK(c <= kMaxPartialBlocks * kTileChannels, "channels-last batch norm over ", c,
                " channels (at most ", kMaxPartialBlocks * kTileChannels, ")");
  return 2 * kMaxPartialBlocks * kTileChannels + 2 * c;
}

void batch_norm_statistics(DType t, const void* x, float* mean, float* inv_std, float* running_mean,
                           float* running_var, int64_t n, int64_t c, int64_t hw, bool channels_last,
                           double eps, double momentum, float* scratch, cudaStream_t stream) {
  with_type(t, [&](auto v) {
    using T = decltype(v);
    if (channels_last) {
      CONVNET_CHECK(scratch != nullptr, "channels-last batch norm statistics without scratch");
      batch_norm_statistics_channels_last(as<T>(x), mean, inv_std, running_mean, running_var,
                                          n * hw, c, static_cast<float>(eps),
                                          static_cast<float>(momentum), scratch, stream);
      return;
    }
    CONVNET_LAUNCH("batch_norm_statistics", batch_norm_statistics_kernel<T>,
                   static_cast<unsigned>(c), kThreads, stream, as<T>(x), mean, inv_std,
                   running_mean, running_var, n, c, hw, static_cast<float>(eps),
                   static_cast<float>(momentum));
  });
}

void batch_norm_backward_batch_stats(DType t, const void* x, const void* dy, const float* mean,
                                     const float* inv_std, const float* gamma, void* dx,
                                     bool accumulate, float* dgamma, float* dbeta, int64_t n,
                                     int64_t c, int64_t hw, bool channels_last, float* scratch,
                                     cudaStream_t stream) {
  with_type(t, [&](auto v) {
    using T = decltype(v);
    if (channels_last) {
      CONVNET_CHECK(scratch != nullptr, "channels-last batch norm backward without scratch");
      batch_norm_backward_batch_channels_last(as<T>(x), as<T>(dy), mean, inv_std, gamma, as<T>(dx),
                                              accumulate, dgamma, dbeta, n * hw, c, scratch,
                                              stream);
      return;
    }
    CONVNET_LAUNCH("batch_norm_backward_batch", batch_norm_backward_batch_kernel<T>,
                   static_cast<unsigned>(c), kThreads, stream, as<T>(x), as<T>(dy), mean, inv_std,
                   gamma, as<T>(dx), accumulate, dgamma, dbeta, n, c, hw);
  });
}

void inverse_std(const float* var, float* inv_std, int64_t c, double eps, cudaStream_t stream) {
  for_each("inverse_std", c, stream, [=] __device__(int64_t i) {
    inv_std[i] = static_cast<float>(1.0 / sqrt(static_cast<double>(var[i]) + eps));
  });
}

void max_pool_forward(DType t, const void* x, void* y, int32_t* argmax, const Window2d& w,
                      cudaStream_t stream) {
  with_type(t, [&](auto v) {
    using T = decltype(v);
    max_pool_forward_t(as<T>(x), as<T>(y), argmax, w, stream);
  });
}

void max_pool_backward(DType t, const void* dy, const int32_t* argmax, void* dx, bool accumulate,
                       const Window2d& w, cudaStream_t stream) {
  with_type(t, [&](auto v) {
    using T = decltype(v);
    max_pool_backward_t(as<T>(dy), argmax, as<T>(dx), accumulate, w, stream);
  });
}

void avg_pool_forward(DType t, const void* x, void* y, const Window2d& w, bool count_include_pad,
                      cudaStream_t stream) {
  with_type(t, [&](auto v) {
    using T = decltype(v);
    avg_pool_forward_t(as<T>(x), as<T>(y), w, count_include_pad, stream);
  });
}

void avg_pool_backward(DType t, const void* dy, void* dx, bool accumulate, const Window2d& w,
                       bool count_include_pad, cudaStream_t stream) {
  with_type(t, [&](auto v) {
    using T = decltype(v);
    avg_pool_backward_t(as<T>(dy), as<T>(dx), accumulate, w, count_include_pad, stream);
  });
}

void global_avg_pool_forward(DType t, const void* x, void* y, int64_t n, int64_t c, int64_t hw,
                             bool channels_last, cudaStream_t stream) {
  with_type(t, [&](auto v) {
    using T = decltype(v);
    global_avg_pool_forward_t(as<T>(x), as<T>(y), n, c, hw, channels_last, stream);
  });
}

void global_avg_pool_backward(DType t, const void* dy, void* dx, int64_t n, int64_t c, int64_t hw,
                              bool channels_last, bool accumulate, cudaStream_t stream) {
  with_type(t, [&](auto v) {
    using T = decltype(v);
    global_avg_pool_backward_t(as<T>(dy), as<T>(dx), n, c, hw, channels_last, accumulate, stream);
  });
}

void channel_gate_forward(DType t, const void* x, const void* s, void* y, int64_t n, int64_t c,
                          int64_t hw, bool channels_last, cudaStream_t stream) {
  with_type(t, [&](auto v) {
    using T = decltype(v);
    channel_gate_forward_t(as<T>(x), as<T>(s), as<T>(y), n, c, hw, channels_last, stream);
  });
}

void channel_gate_backward(DType t, const void* x, const void* s, const void* dy, void* dx,
                           bool dx_accumulate, void* ds, bool ds_accumulate, int64_t n, int64_t c,
                           int64_t hw, bool channels_last, cudaStream_t stream) {
  with_type(t, [&](auto v) {
    using T = decltype(v);
    channel_gate_backward_t(as<T>(x), as<T>(s), as<T>(dy), as<T>(dx), dx_accumulate, as<T>(ds),
                            ds_accumulate, n, c, hw, channels_last, stream);
  });
}

void softmax_cross_entropy_forward(const float* logits, const int32_t* labels, float* row_loss,
                                   float* log_sum_exp, int64_t n, int64_t k, float smoothing,
                                   cudaStream_t stream) {
  for_each("softmax_cross_entropy_forward", n, stream, [=] __device__(int64_t r) {
    math::softmax_cross_entropy_forward(r, logits, labels, row_loss, log_sum_exp, k, smoothing);
  });
}

void softmax_cross_entropy_backward(const float* logits, const int32_t* labels,
                                    const float* log_sum_exp, float* dlogits, bool accumulate,
                                    int64_t n, int64_t k, float smoothing, cudaStream_t stream) {
  for_each("softmax_cross_entropy_backward", n * k, stream, [=] __device__(int64_t i) {
    math::softmax_cross_entropy_backward(i, logits, labels, log_sum_exp, dlogits, accumulate, n, k,
                                         smoothing);
  });
}

void accumulate_loss_metrics(const float* row_loss, const float* logits, const int32_t* labels,
                             int64_t n, int64_t k, double* metrics, cudaStream_t stream) {
  CONVNET_LAUNCH("loss_metrics", loss_metrics_kernel, 1, kThreads, stream, row_loss, logits, labels,
                 n, k, metrics);
}

void sgd_step_segments(float* w, const float* g, float* v, int64_t n, const int64_t* ends,
                       const float* decays, int64_t count, float lr, float momentum, float keep,
                       bool first, bool nesterov, float grad_scale, cudaStream_t stream) {
  for_each("sgd_step_segments", n, stream, [=] __device__(int64_t i) {
    const float decay = decays[math::segment_of(i, ends, count)];
    math::sgd_step(i, w, g, v, lr, momentum, keep, decay, first, nesterov, grad_scale);
  });
}

void flag_nonfinite(const float* x, int64_t n, int32_t* flag, cudaStream_t stream) {
  for_each("flag_nonfinite", n, stream, [=] __device__(int64_t i) {
    if (!isfinite(x[i])) *flag = 1;  // a benign race: every writer stores 1
  });
}

}  // namespace convnet::cuda
