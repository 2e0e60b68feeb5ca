#include <algorithm>
#include <cfloat>

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

#define GRID_STRIDE(i, n)                                                                \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)

__device__ inline void store(float* dst, float value, bool accumulate) {
  *dst = accumulate ? *dst + value : value;
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

__device__ float block_max(float value) {
  __shared__ float partial[kThreads / 32];
  for (int offset = 16; offset > 0; offset /= 2)
    value = fmaxf(value, __shfl_down_sync(0xffffffffu, value, offset));
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) partial[warp] = value;
  __syncthreads();
  value = threadIdx.x < kThreads / 32 ? partial[threadIdx.x] : -FLT_MAX;
  if (warp == 0)
    for (int offset = 16; offset > 0; offset /= 2)
      value = fmaxf(value, __shfl_down_sync(0xffffffffu, value, offset));
  __syncthreads();
  return value;
}

__global__ void strided_copy_kernel(float* dst, const float* src, Strided4 l, int64_t total,
                                    bool accumulate) {
  GRID_STRIDE(i, total) {
    int64_t rest = i, d = 0, s = 0;
    for (int k = 3; k >= 0; --k) {
      const int64_t index = rest % l.shape[k];
      rest /= l.shape[k];
      d += index * l.dst_strides[k];
      s += index * l.src_strides[k];
    }
    store(dst + d, src[s], accumulate);
  }
}

__global__ void scale_kernel(float* x, int64_t n, float factor) {
  GRID_STRIDE(i, n) x[i] *= factor;
}

__global__ void add_kernel(const float* a, const float* b, float* y, int64_t n) {
  GRID_STRIDE(i, n) y[i] = a[i] + b[i];
}

__global__ void relu_forward_kernel(const float* x, float* y, int64_t n) {
  GRID_STRIDE(i, n) y[i] = fmaxf(x[i], 0.0f);
}

__global__ void relu_backward_kernel(const float* y, const float* dy, float* dx, int64_t n,
                                     bool accumulate) {
  GRID_STRIDE(i, n) store(dx + i, y[i] > 0.0f ? dy[i] : 0.0f, accumulate);
}

__device__ inline float normalized(const float* x, const float* mean, const float* inv_std,
                                   const float* gamma, const float* beta, int64_t i, int64_t c,
                                   int64_t hw) {
  const int64_t ch = (i / hw) % c;
  return gamma[ch] * (x[i] - mean[ch]) * inv_std[ch] + beta[ch];
}

__global__ void batch_norm_apply_kernel(const float* x, const float* mean, const float* inv_std,
                                        const float* gamma, const float* beta, float* y,
                                        int64_t total, int64_t c, int64_t hw, bool relu) {
  GRID_STRIDE(i, total) {
    const float v = normalized(x, mean, inv_std, gamma, beta, i, c, hw);
    y[i] = relu ? fmaxf(v, 0.0f) : v;
  }
}

__global__ void batch_norm_relu_mask_kernel(const float* x, const float* mean, const float* inv_std,
                                            const float* gamma, const float* beta, const float* dy,
                                            float* masked, int64_t total, int64_t c, int64_t hw) {
  GRID_STRIDE(i, total)
  masked[i] = normalized(x, mean, inv_std, gamma, beta, i, c, hw) > 0.0f ? dy[i] : 0.0f;
}

// One block per channel: sums of dy and dy * (x - mean) over (N, H, W).
__global__ void batch_norm_fixed_sums_kernel(const float* x, const float* dy, const float* mean,
                                             const float* inv_std, float* dgamma, float* dbeta,
                                             int64_t n, int64_t c, int64_t hw) {
  const int64_t ch = blockIdx.x;
  float sum_dy = 0.0f, sum_dy_xmu = 0.0f;
  for (int64_t j = threadIdx.x; j < n * hw; j += blockDim.x) {
    const int64_t i = (j / hw) * c * hw + ch * hw + j % hw;
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

__global__ void batch_norm_fixed_dx_kernel(const float* dy, const float* inv_std,
                                           const float* gamma, float* dx, bool accumulate,
                                           int64_t total, int64_t c, int64_t hw) {
  GRID_STRIDE(i, total) {
    const int64_t ch = (i / hw) % c;
    store(dx + i, dy[i] * gamma[ch] * inv_std[ch], accumulate);
  }
}

__global__ void inverse_std_kernel(const float* var, float* inv_std, int64_t c, double eps) {
  GRID_STRIDE(i, c) inv_std[i] = static_cast<float>(1.0 / sqrt(static_cast<double>(var[i]) + eps));
}

__global__ void max_pool_forward_kernel(const float* x, float* y, int32_t* argmax, Window2d w,
                                        int64_t total) {
  GRID_STRIDE(i, total) {
    const int64_t ox = i % w.out_w, oy = (i / w.out_w) % w.out_h, plane = i / (w.out_w * w.out_h);
    const float* xp = x + plane * w.h * w.w;
    float best = -FLT_MAX;
    int32_t best_index = -1;
    for (int64_t ky = 0; ky < w.kernel; ++ky) {
      const int64_t iy = oy * w.stride - w.padding + ky;
      if (iy < 0 || iy >= w.h) continue;
      for (int64_t kx = 0; kx < w.kernel; ++kx) {
        const int64_t ix = ox * w.stride - w.padding + kx;
        if (ix < 0 || ix >= w.w) continue;
        const float v = xp[iy * w.w + ix];
        if (best_index < 0 || v > best || isnan(v)) {
          best = v;
          best_index = static_cast<int32_t>(iy * w.w + ix);
          if (isnan(v)) break;
        }
      }
    }
    y[i] = best;
    if (argmax) argmax[i] = best_index;
  }
}

// The output windows that contain input row (or column) i: [first, last].
__device__ inline void covering(int64_t i, int64_t kernel, int64_t stride, int64_t padding,
                                int64_t out, int64_t& first, int64_t& last) {
  const int64_t p = i + padding;
  first = p < kernel ? 0 : (p - kernel) / stride + 1;
  last = min(p / stride, out - 1);
}

__global__ void max_pool_backward_kernel(const float* dy, const int32_t* argmax, float* dx,
                                         bool accumulate, Window2d w, int64_t total) {
  GRID_STRIDE(i, total) {
    const int64_t ix = i % w.w, iy = (i / w.w) % w.h, plane = i / (w.w * w.h);
    int64_t y0, y1, x0, x1;
    covering(iy, w.kernel, w.stride, w.padding, w.out_h, y0, y1);
    covering(ix, w.kernel, w.stride, w.padding, w.out_w, x0, x1);
    const int32_t self = static_cast<int32_t>(iy * w.w + ix);
    float sum = 0.0f;
    for (int64_t oy = y0; oy <= y1; ++oy)
      for (int64_t ox = x0; ox <= x1; ++ox) {
        const int64_t o = plane * w.out_h * w.out_w + oy * w.out_w + ox;
        if (argmax[o] == self) sum += dy[o];
      }
    store(dx + i, sum, accumulate);
  }
}

__device__ inline float window_count(const Window2d& w, int64_t oy, int64_t ox, bool include_pad) {
  if (include_pad) return static_cast<float>(w.kernel * w.kernel);
  const int64_t y0 = max(oy * w.stride - w.padding, int64_t{0}),
                y1 = min(oy * w.stride - w.padding + w.kernel, w.h);
  const int64_t x0 = max(ox * w.stride - w.padding, int64_t{0}),
                x1 = min(ox * w.stride - w.padding + w.kernel, w.w);
  return static_cast<float>((y1 - y0) * (x1 - x0));
}

__global__ void avg_pool_forward_kernel(const float* x, float* y, Window2d w, bool include_pad,
                                        int64_t total) {
  GRID_STRIDE(i, total) {
    const int64_t ox = i % w.out_w, oy = (i / w.out_w) % w.out_h, plane = i / (w.out_w * w.out_h);
    const float* xp = x + plane * w.h * w.w;
    float sum = 0.0f;
    for (int64_t ky = 0; ky < w.kernel; ++ky) {
      const int64_t iy = oy * w.stride - w.padding + ky;
      if (iy < 0 || iy >= w.h) continue;
      for (int64_t kx = 0; kx < w.kernel; ++kx) {
        const int64_t ix = ox * w.stride - w.padding + kx;
        if (ix >= 0 && ix < w.w) sum += xp[iy * w.w + ix];
      }
    }
    y[i] = sum / window_count(w, oy, ox, include_pad);
  }
}

__global__ void avg_pool_backward_kernel(const float* dy, float* dx, bool accumulate, Window2d w,
                                         bool include_pad, int64_t total) {
  GRID_STRIDE(i, total) {
    const int64_t ix = i % w.w, iy = (i / w.w) % w.h, plane = i / (w.w * w.h);
    int64_t y0, y1, x0, x1;
    covering(iy, w.kernel, w.stride, w.padding, w.out_h, y0, y1);
    covering(ix, w.kernel, w.stride, w.padding, w.out_w, x0, x1);
    float sum = 0.0f;
    for (int64_t oy = y0; oy <= y1; ++oy)
      for (int64_t ox = x0; ox <= x1; ++ox)
        sum += dy[plane * w.out_h * w.out_w + oy * w.out_w + ox] /
               window_count(w, oy, ox, include_pad);
    store(dx + i, sum, accumulate);
  }
}

// One block per (n, c) plane.
__global__ void global_avg_pool_forward_kernel(const float* x, float* y, int64_t hw) {
  const float* xp = x + blockIdx.x * hw;
  float sum = 0.0f;
  for (int64_t j = threadIdx.x; j < hw; j += blockDim.x) sum += xp[j];
  sum = block_sum(sum);
  if (threadIdx.x == 0) y[blockIdx.x] = sum / static_cast<float>(hw);
}

__global__ void global_avg_pool_backward_kernel(const float* dy, float* dx, int64_t hw,
                                                bool accumulate, int64_t total) {
  GRID_STRIDE(i, total) store(dx + i, dy[i / hw] / static_cast<float>(hw), accumulate);
}

__device__ inline float sigmoid(float v) { return 1.0f / (1.0f + expf(-v)); }

__global__ void channel_gate_forward_kernel(const float* x, const float* s, float* y, int64_t hw,
                                            int64_t total) {
  GRID_STRIDE(i, total) y[i] = x[i] * sigmoid(s[i / hw]);
}

// One block per (n, c) plane.
__global__ void channel_gate_backward_kernel(const float* x, const float* s, const float* dy,
                                             float* dx, bool dx_accumulate, float* ds,
                                             bool ds_accumulate, int64_t hw) {
  const int64_t plane = blockIdx.x;
  const float g = sigmoid(s[plane]);
  float sum = 0.0f;
  for (int64_t j = threadIdx.x; j < hw; j += blockDim.x) {
    const int64_t i = plane * hw + j;
    sum += dy[i] * x[i];
    if (dx) store(dx + i, dy[i] * g, dx_accumulate);
  }
  sum = block_sum(sum);
  if (threadIdx.x == 0 && ds) store(ds + plane, sum * g * (1.0f - g), ds_accumulate);
}

// One block per row.
__global__ void softmax_cross_entropy_forward_kernel(const float* logits, const int32_t* labels,
                                                     float* row_loss, float* log_sum_exp, int64_t k,
                                                     float smoothing) {
  const float* z = logits + blockIdx.x * k;
  float m = -FLT_MAX;
  for (int64_t j = threadIdx.x; j < k; j += blockDim.x) m = fmaxf(m, z[j]);
  m = block_max(m);
  __shared__ float row_max;
  if (threadIdx.x == 0) row_max = m;
  __syncthreads();
  float sum_exp = 0.0f, sum_z = 0.0f;
  for (int64_t j = threadIdx.x; j < k; j += blockDim.x) {
    sum_exp += expf(z[j] - row_max);
    sum_z += z[j];
  }
  sum_exp = block_sum(sum_exp);
  sum_z = block_sum(sum_z);
  if (threadIdx.x == 0) {
    const float lse = row_max + logf(sum_exp);
    log_sum_exp[blockIdx.x] = lse;
    row_loss[blockIdx.x] = lse - (1.0f - smoothing) * z[labels[blockIdx.x]] -
                           smoothing / static_cast<float>(k) * sum_z;
  }
}

__global__ void softmax_cross_entropy_backward_kernel(const float* logits, const int32_t* labels,
                                                      const float* log_sum_exp, float* dlogits,
                                                      bool accumulate, int64_t n, int64_t k,
                                                      float smoothing) {
  GRID_STRIDE(i, n * k) {
    const int64_t row = i / k, j = i % k;
    const float target =
        (j == labels[row] ? 1.0f - smoothing : 0.0f) + smoothing / static_cast<float>(k);
    store(dlogits + i, (expf(logits[i] - log_sum_exp[row]) - target) / static_cast<float>(n),
          accumulate);
  }
}

__global__ void sgd_step_kernel(float* w, const float* g, float* v, int64_t n, float lr,
                                float momentum, float keep, float decay, bool first,
                                bool nesterov) {
  GRID_STRIDE(i, n) {
    float d = g[i] + decay * w[i];
    if (v) {
      v[i] = first ? d : momentum * v[i] + keep * d;
      d = nesterov ? d + momentum * v[i] : v[i];
    }
    w[i] -= lr * d;
  }
}

}  // namespace

void strided_copy(float* dst, const float* src, const Strided4& layout, bool accumulate,
                  cudaStream_t stream) {
  const int64_t total = layout.shape[0] * layout.shape[1] * layout.shape[2] * layout.shape[3];
  if (total == 0) return;
  strided_copy_kernel<<<blocks_for(total), kThreads, 0, stream>>>(dst, src, layout, total,
                                                                  accumulate);
  CONVNET_CUDA_LAUNCHED("strided_copy");
}

void scale(float* x, int64_t n, float factor, cudaStream_t stream) {
  scale_kernel<<<blocks_for(n), kThreads, 0, stream>>>(x, n, factor);
  CONVNET_CUDA_LAUNCHED("scale");
}

void add(const float* a, const float* b, float* y, int64_t n, cudaStream_t stream) {
  add_kernel<<<blocks_for(n), kThreads, 0, stream>>>(a, b, y, n);
  CONVNET_CUDA_LAUNCHED("add");
}

void relu_forward(const float* x, float* y, int64_t n, cudaStream_t stream) {
  relu_forward_kernel<<<blocks_for(n), kThreads, 0, stream>>>(x, y, n);
  CONVNET_CUDA_LAUNCHED("relu_forward");
}

void relu_backward(const float* y, const float* dy, float* dx, int64_t n, bool accumulate,
                   cudaStream_t stream) {
  relu_backward_kernel<<<blocks_for(n), kThreads, 0, stream>>>(y, dy, dx, n, accumulate);
  CONVNET_CUDA_LAUNCHED("relu_backward");
}

void batch_norm_apply(const float* x, const float* mean, const float* inv_std, const float* gamma,
                      const float* beta, float* y, int64_t n, int64_t c, int64_t hw, bool relu,
                      cudaStream_t stream) {
  const int64_t total = n * c * hw;
  batch_norm_apply_kernel<<<blocks_for(total), kThreads, 0, stream>>>(x, mean, inv_std, gamma, beta,
                                                                      y, total, c, hw, relu);
  CONVNET_CUDA_LAUNCHED("batch_norm_apply");
}

void batch_norm_relu_mask(const float* x, const float* mean, const float* inv_std,
                          const float* gamma, const float* beta, const float* dy, float* masked,
                          int64_t n, int64_t c, int64_t hw, cudaStream_t stream) {
  const int64_t total = n * c * hw;
  batch_norm_relu_mask_kernel<<<blocks_for(total), kThreads, 0, stream>>>(
      x, mean, inv_std, gamma, beta, dy, masked, total, c, hw);
  CONVNET_CUDA_LAUNCHED("batch_norm_relu_mask");
}

void batch_norm_backward_fixed_stats(const float* x, const float* dy, const float* mean,
                                     const float* inv_std, const float* gamma, float* dx,
                                     bool accumulate, float* dgamma, float* dbeta, int64_t n,
                                     int64_t c, int64_t hw, cudaStream_t stream) {
  batch_norm_fixed_sums_kernel<<<static_cast<unsigned>(c), kThreads, 0, stream>>>(
      x, dy, mean, inv_std, dgamma, dbeta, n, c, hw);
  CONVNET_CUDA_LAUNCHED("batch_norm_fixed_sums");
  if (dx == nullptr) return;
  const int64_t total = n * c * hw;
  batch_norm_fixed_dx_kernel<<<blocks_for(total), kThreads, 0, stream>>>(dy, inv_std, gamma, dx,
                                                                         accumulate, total, c, hw);
  CONVNET_CUDA_LAUNCHED("batch_norm_fixed_dx");
}

void inverse_std(const float* var, float* inv_std, int64_t c, double eps, cudaStream_t stream) {
  inverse_std_kernel<<<blocks_for(c), kThreads, 0, stream>>>(var, inv_std, c, eps);
  CONVNET_CUDA_LAUNCHED("inverse_std");
}

void max_pool_forward(const float* x, float* y, int32_t* argmax, const Window2d& w,
                      cudaStream_t stream) {
  const int64_t total = w.n * w.c * w.out_h * w.out_w;
  max_pool_forward_kernel<<<blocks_for(total), kThreads, 0, stream>>>(x, y, argmax, w, total);
  CONVNET_CUDA_LAUNCHED("max_pool_forward");
}

void max_pool_backward(const float* dy, const int32_t* argmax, float* dx, bool accumulate,
                       const Window2d& w, cudaStream_t stream) {
  const int64_t total = w.n * w.c * w.h * w.w;
  max_pool_backward_kernel<<<blocks_for(total), kThreads, 0, stream>>>(dy, argmax, dx, accumulate,
                                                                       w, total);
  CONVNET_CUDA_LAUNCHED("max_pool_backward");
}

void avg_pool_forward(const float* x, float* y, const Window2d& w, bool count_include_pad,
                      cudaStream_t stream) {
  const int64_t total = w.n * w.c * w.out_h * w.out_w;
  avg_pool_forward_kernel<<<blocks_for(total), kThreads, 0, stream>>>(x, y, w, count_include_pad,
                                                                      total);
  CONVNET_CUDA_LAUNCHED("avg_pool_forward");
}

void avg_pool_backward(const float* dy, float* dx, bool accumulate, const Window2d& w,
                       bool count_include_pad, cudaStream_t stream) {
  const int64_t total = w.n * w.c * w.h * w.w;
  avg_pool_backward_kernel<<<blocks_for(total), kThreads, 0, stream>>>(dy, dx, accumulate, w,
                                                                       count_include_pad, total);
  CONVNET_CUDA_LAUNCHED("avg_pool_backward");
}

void global_avg_pool_forward(const float* x, float* y, int64_t nc, int64_t hw,
                             cudaStream_t stream) {
  global_avg_pool_forward_kernel<<<static_cast<unsigned>(nc), kThreads, 0, stream>>>(x, y, hw);
  CONVNET_CUDA_LAUNCHED("global_avg_pool_forward");
}

void global_avg_pool_backward(const float* dy, float* dx, int64_t nc, int64_t hw, bool accumulate,
                              cudaStream_t stream) {
  global_avg_pool_backward_kernel<<<blocks_for(nc * hw), kThreads, 0, stream>>>(
      dy, dx, hw, accumulate, nc * hw);
  CONVNET_CUDA_LAUNCHED("global_avg_pool_backward");
}

void channel_gate_forward(const float* x, const float* s, float* y, int64_t nc, int64_t hw,
                          cudaStream_t stream) {
  channel_gate_forward_kernel<<<blocks_for(nc * hw), kThreads, 0, stream>>>(x, s, y, hw, nc * hw);
  CONVNET_CUDA_LAUNCHED("channel_gate_forward");
}

void channel_gate_backward(const float* x, const float* s, const float* dy, float* dx,
                           bool dx_accumulate, float* ds, bool ds_accumulate, int64_t nc,
                           int64_t hw, cudaStream_t stream) {
  channel_gate_backward_kernel<<<static_cast<unsigned>(nc), kThreads, 0, stream>>>(
      x, s, dy, dx, dx_accumulate, ds, ds_accumulate, hw);
  CONVNET_CUDA_LAUNCHED("channel_gate_backward");
}

void softmax_cross_entropy_forward(const float* logits, const int32_t* labels, float* row_loss,
                                   float* log_sum_exp, int64_t n, int64_t k, float smoothing,
                                   cudaStream_t stream) {
  softmax_cross_entropy_forward_kernel<<<static_cast<unsigned>(n), kThreads, 0, stream>>>(
      logits, labels, row_loss, log_sum_exp, k, smoothing);
  CONVNET_CUDA_LAUNCHED("softmax_cross_entropy_forward");
}

void softmax_cross_entropy_backward(const float* logits, const int32_t* labels,
                                    const float* log_sum_exp, float* dlogits, bool accumulate,
                                    int64_t n, int64_t k, float smoothing, cudaStream_t stream) {
  softmax_cross_entropy_backward_kernel<<<blocks_for(n * k), kThreads, 0, stream>>>(
      logits, labels, log_sum_exp, dlogits, accumulate, n, k, smoothing);
  CONVNET_CUDA_LAUNCHED("softmax_cross_entropy_backward");
}

void sgd_step(float* w, const float* g, float* v, int64_t n, float lr, float momentum, float keep,
              float decay, bool first, bool nesterov, cudaStream_t stream) {
  sgd_step_kernel<<<blocks_for(n), kThreads, 0, stream>>>(w, g, v, n, lr, momentum, keep, decay,
                                                          first, nesterov);
  CONVNET_CUDA_LAUNCHED("sgd_step");
}

}  // namespace convnet::cuda
