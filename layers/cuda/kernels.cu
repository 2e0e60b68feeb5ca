// Launchers for the kernels of kernels.h. The arithmetic is in kernel_math.h
// (tested on the host); here each function runs in a grid-stride loop over
// its outputs. Only the per-channel sums of the fixed-statistics batch-norm
// backward use a block reduction (one block per channel, N*H*W terms each).
#include <algorithm>

#include "core/cuda/check.h"
#include "layers/cuda/kernels.h"

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
  for_each_kernel<<<blocks_for(n), kThreads, 0, stream>>>(n, f);
  CONVNET_CUDA_LAUNCHED(name);
}

// Sum over the block (blockDim.x == kThreads); the result is valid in thread 0.
__device__ float block_sum(float value) {
  __shared__ float partial[kThreads / 32];
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
__global__ void batch_norm_fixed_sums_kernel(const float* x, const float* dy, const float* mean,
                                             const float* inv_std, float* dgamma, float* dbeta,
                                             int64_t n, int64_t c, int64_t hw, bool channels_last) {
  const int64_t ch = blockIdx.x;
  float sum_dy = 0.0f, sum_dy_xmu = 0.0f;
  for (int64_t j = threadIdx.x; j < n * hw; j += blockDim.x) {
    const int64_t i = math::plane_offset((j / hw) * c + ch, j % hw, c, hw, channels_last);
    sum_dy += dy[i];
    sum_dy_xmu += dy[i] * (x[i] - mean[ch]);
  }
  sum_dy = block_sum(sum_dy);
  sum_dy_xmu = block_sum(sum_dy_xmu);
  if (threadIdx.x == 0) {
    dgamma[ch] += sum_dy_xmu * inv_std[ch];
    dbeta[ch] += sum_dy;
  }
}

}  // namespace

void strided_copy(float* dst, const float* src, const Strided4& l, bool accumulate,
                  cudaStream_t stream) {
  const int64_t total = l.shape[0] * l.shape[1] * l.shape[2] * l.shape[3];
  for_each("strided_copy", total, stream,
           [=] __device__(int64_t i) { math::strided_copy(i, dst, src, l, accumulate); });
}

void scale(float* x, int64_t n, float factor, cudaStream_t stream) {
  for_each("scale", n, stream, [=] __device__(int64_t i) { x[i] *= factor; });
}

void add(const float* a, const float* b, float* y, int64_t n, cudaStream_t stream) {
  for_each("add", n, stream, [=] __device__(int64_t i) { y[i] = a[i] + b[i]; });
}

void relu_forward(const float* x, float* y, int64_t n, cudaStream_t stream) {
  for_each("relu_forward", n, stream, [=] __device__(int64_t i) { y[i] = fmaxf(x[i], 0.0f); });
}

void relu_backward(const float* y, const float* dy, float* dx, int64_t n, bool accumulate,
                   cudaStream_t stream) {
  for_each("relu_backward", n, stream, [=] __device__(int64_t i) {
    math::store(dx + i, y[i] > 0.0f ? dy[i] : 0.0f, accumulate);
  });
}

void batch_norm_apply(const float* x, const float* mean, const float* inv_std, const float* gamma,
                      const float* beta, float* y, int64_t n, int64_t c, int64_t hw,
                      bool channels_last, bool relu, cudaStream_t stream) {
  for_each("batch_norm_apply", n * c * hw, stream, [=] __device__(int64_t i) {
    const float v = math::batch_norm_value(x, mean, inv_std, gamma, beta, i, c, hw, channels_last);
    y[i] = relu ? fmaxf(v, 0.0f) : v;
  });
}

void batch_norm_relu_mask(const float* x, const float* mean, const float* inv_std,
                          const float* gamma, const float* beta, const float* dy, float* masked,
                          int64_t n, int64_t c, int64_t hw, bool channels_last,
                          cudaStream_t stream) {
  for_each("batch_norm_relu_mask", n * c * hw, stream, [=] __device__(int64_t i) {
    masked[i] =
        math::batch_norm_value(x, mean, inv_std, gamma, beta, i, c, hw, channels_last) > 0.0f
            ? dy[i]
            : 0.0f;
  });
}

void batch_norm_backward_fixed_stats(const float* x, const float* dy, const float* mean,
                                     const float* inv_std, const float* gamma, float* dx,
                                     bool accumulate, float* dgamma, float* dbeta, int64_t n,
                                     int64_t c, int64_t hw, bool channels_last,
                                     cudaStream_t stream) {
  batch_norm_fixed_sums_kernel<<<static_cast<unsigned>(c), kThreads, 0, stream>>>(
      x, dy, mean, inv_std, dgamma, dbeta, n, c, hw, channels_last);
  CONVNET_CUDA_LAUNCHED("batch_norm_fixed_sums");
  if (dx == nullptr) return;
  for_each("batch_norm_fixed_dx", n * c * hw, stream, [=] __device__(int64_t i) {
    const int64_t ch = math::channel_of(i, c, hw, channels_last);
    math::store(dx + i, dy[i] * gamma[ch] * inv_std[ch], accumulate);
  });
}

void inverse_std(const float* var, float* inv_std, int64_t c, double eps, cudaStream_t stream) {
  for_each("inverse_std", c, stream, [=] __device__(int64_t i) {
    inv_std[i] = static_cast<float>(1.0 / sqrt(static_cast<double>(var[i]) + eps));
  });
}

void max_pool_forward(const float* x, float* y, int32_t* argmax, const Window2d& w,
                      cudaStream_t stream) {
  for_each("max_pool_forward", w.n * w.c * w.out_h * w.out_w, stream,
           [=] __device__(int64_t i) { math::max_pool_forward(i, x, y, argmax, w); });
}

void max_pool_backward(const float* dy, const int32_t* argmax, float* dx, bool accumulate,
                       const Window2d& w, cudaStream_t stream) {
  for_each("max_pool_backward", w.n * w.c * w.h * w.w, stream, [=] __device__(int64_t i) {
    math::max_pool_backward(i, dy, argmax, dx, accumulate, w);
  });
}

void avg_pool_forward(const float* x, float* y, const Window2d& w, bool count_include_pad,
                      cudaStream_t stream) {
  for_each("avg_pool_forward", w.n * w.c * w.out_h * w.out_w, stream,
           [=] __device__(int64_t i) { math::avg_pool_forward(i, x, y, w, count_include_pad); });
}

void avg_pool_backward(const float* dy, float* dx, bool accumulate, const Window2d& w,
                       bool count_include_pad, cudaStream_t stream) {
  for_each("avg_pool_backward", w.n * w.c * w.h * w.w, stream, [=] __device__(int64_t i) {
    math::avg_pool_backward(i, dy, dx, accumulate, w, count_include_pad);
  });
}

void global_avg_pool_forward(const float* x, float* y, int64_t n, int64_t c, int64_t hw,
                             bool channels_last, cudaStream_t stream) {
  for_each("global_avg_pool_forward", n * c, stream, [=] __device__(int64_t p) {
    math::global_avg_pool_forward(p, x, y, c, hw, channels_last);
  });
}

void global_avg_pool_backward(const float* dy, float* dx, int64_t n, int64_t c, int64_t hw,
                              bool channels_last, bool accumulate, cudaStream_t stream) {
  for_each("global_avg_pool_backward", n * c * hw, stream, [=] __device__(int64_t i) {
    math::global_avg_pool_backward(i, dy, dx, c, hw, channels_last, accumulate);
  });
}

void channel_gate_forward(const float* x, const float* s, float* y, int64_t n, int64_t c,
                          int64_t hw, bool channels_last, cudaStream_t stream) {
  for_each("channel_gate_forward", n * c * hw, stream, [=] __device__(int64_t i) {
    math::channel_gate_forward(i, x, s, y, c, hw, channels_last);
  });
}

void channel_gate_backward(const float* x, const float* s, const float* dy, float* dx,
                           bool dx_accumulate, float* ds, bool ds_accumulate, int64_t n, int64_t c,
                           int64_t hw, bool channels_last, cudaStream_t stream) {
  for_each("channel_gate_backward", n * c, stream, [=] __device__(int64_t p) {
    math::channel_gate_backward(p, x, s, dy, dx, dx_accumulate, ds, ds_accumulate, c, hw,
                                channels_last);
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

void sgd_step(float* w, const float* g, float* v, int64_t n, float lr, float momentum, float keep,
              float decay, bool first, bool nesterov, cudaStream_t stream) {
  for_each("sgd_step", n, stream, [=] __device__(int64_t i) {
    math::sgd_step(i, w, g, v, lr, momentum, keep, decay, first, nesterov);
  });
}

}  // namespace convnet::cuda
