// CUDA kernels of the GPU backend, for what cuDNN has no call for. Every
// function enqueues on `stream` and returns at once (no host synchronization)
// and throws convnet::Error when the launch fails. All tensors are f32 device
// memory; "accumulate" means dst += value, otherwise dst = value (the
// GradMode rule of layers/layer.h). Shapes are logical (N, C, H, W), dense
// row-major unless strides are given.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "layers/cuda/kernel_math.h"  // Strided4, Window2d

namespace convnet::cuda {

void strided_copy(float* dst, const float* src, const Strided4& layout, bool accumulate,
                  cudaStream_t stream);

// x *= factor.
void scale(float* x, int64_t n, float factor, cudaStream_t stream);
// y = a + b (y may alias a).
void add(const float* a, const float* b, float* y, int64_t n, cudaStream_t stream);
// y = max(x, 0) (y may alias x).
void relu_forward(const float* x, float* y, int64_t n, cudaStream_t stream);
// dx (+)= dy * (y > 0).
void relu_backward(const float* y, const float* dy, float* dx, int64_t n, bool accumulate,
                   cudaStream_t stream);

// Batch normalization with known per-channel statistics (mean, inv_std = 1 /
// sqrt(var + eps)): y = gamma * (x - mean) * inv_std + beta, then max(., 0)
// when relu. channels_last: x, y, dy, dx are NHWC (here and below).
void batch_norm_apply(const float* x, const float* mean, const float* inv_std, const float* gamma,
                      const float* beta, float* y, int64_t n, int64_t c, int64_t hw,
                      bool channels_last, bool relu, cudaStream_t stream);
// masked = dy where batch_norm_apply(x) > 0, else 0 (backward of a fused BN+ReLU).
void batch_norm_relu_mask(const float* x, const float* mean, const float* inv_std,
                          const float* gamma, const float* beta, const float* dy, float* masked,
                          int64_t n, int64_t c, int64_t hw, bool channels_last,
                          cudaStream_t stream);
// Backward of batch normalization with CONSTANT statistics (inference mode):
// dx (+)= dy * gamma * inv_std (dx may be null); dgamma += sum(dy * (x - mean)) * inv_std;
// dbeta += sum(dy), sums over (N, H, W).
void batch_norm_backward_fixed_stats(const float* x, const float* dy, const float* mean,
                                     const float* inv_std, const float* gamma, float* dx,
                                     bool accumulate, float* dgamma, float* dbeta, int64_t n,
                                     int64_t c, int64_t hw, bool channels_last,
                                     cudaStream_t stream);
// inv_std[c] = 1 / sqrt(var[c] + eps).
void inverse_std(const float* var, float* inv_std, int64_t c, double eps, cudaStream_t stream);

// Max pooling; argmax[i] is the index within its (h, w) plane of output i's
// maximum (the first one on ties; padding never wins).
void max_pool_forward(const float* x, float* y, int32_t* argmax, const Window2d& window,
                      cudaStream_t stream);
void max_pool_backward(const float* dy, const int32_t* argmax, float* dx, bool accumulate,
                       const Window2d& window, cudaStream_t stream);
// Average pooling; the divisor is kernel^2 when count_include_pad, else the
// number of window cells inside the input.
void avg_pool_forward(const float* x, float* y, const Window2d& window, bool count_include_pad,
                      cudaStream_t stream);
void avg_pool_backward(const float* dy, float* dx, bool accumulate, const Window2d& window,
                       bool count_include_pad, cudaStream_t stream);

// y[n, c] = mean over hw of x[n, c, :]; dx (+)= dy[n, c] / hw.
void global_avg_pool_forward(const float* x, float* y, int64_t n, int64_t c, int64_t hw,
                             bool channels_last, cudaStream_t stream);
void global_avg_pool_backward(const float* dy, float* dx, int64_t n, int64_t c, int64_t hw,
                              bool channels_last, bool accumulate, cudaStream_t stream);

// y = x * sigmoid(s[n, c]) over hw (y may alias x).
void channel_gate_forward(const float* x, const float* s, float* y, int64_t n, int64_t c,
                          int64_t hw, bool channels_last, cudaStream_t stream);
// dx (+)= dy * sigmoid(s) (dx may be null); ds (+)= sum_hw(dy * x) * sigmoid'(s) (ds may be null).
void channel_gate_backward(const float* x, const float* s, const float* dy, float* dx,
                           bool dx_accumulate, float* ds, bool ds_accumulate, int64_t n, int64_t c,
                           int64_t hw, bool channels_last, cudaStream_t stream);

// Softmax cross-entropy with label smoothing s over (n, k) logits and int32
// labels: row_loss[i] = logsumexp(z_i) - (1 - s) z_i[label] - s/k sum_j z_i[j];
// log_sum_exp[i] is kept for backward.
void softmax_cross_entropy_forward(const float* logits, const int32_t* labels, float* row_loss,
                                   float* log_sum_exp, int64_t n, int64_t k, float smoothing,
                                   cudaStream_t stream);
// dlogits (+)= (softmax(z) - ((1 - s) onehot + s/k)) / n.
void softmax_cross_entropy_backward(const float* logits, const int32_t* labels,
                                    const float* log_sum_exp, float* dlogits, bool accumulate,
                                    int64_t n, int64_t k, float smoothing, cudaStream_t stream);

// One SGD step (torch.optim.SGD semantics, see layers/sgd.h) over [0, n):
// d = g + decay * w; v = first ? d : momentum v + (1 - dampening) d;
// d = nesterov ? d + momentum v : v; w -= lr d. v may be null (no momentum).
void sgd_step(float* w, const float* g, float* v, int64_t n, float lr, float momentum, float keep,
              float decay, bool first, bool nesterov, cudaStream_t stream);

}  // namespace convnet::cuda
