// The launchers of the GPU backend's own CUDA kernels, for what cuDNN has no
// call for; each is defined in the file of the layer it serves
// (layers/cuda/<layer>_cuda.cu, batch_norm_cudnn.cu) or, when several use it,
// in tensor_kernels.cu (copies, scaling, bias) and sgd_cuda.cu. Every
// function enqueues on `stream` and returns at once (no host synchronization)
// and throws convnet::Error when the launch fails. "accumulate" means
// dst += value, otherwise dst = value (the GradMode rule of layers/layer.h).
// Shapes are logical (N, C, H, W), dense row-major unless strides are given.
//
// Element types: activations and their gradients (void* below) are of the
// DType passed with them: f32, or bf16 / f16 under mixed precision; the
// kernels compute in f32 and round once per store. Per-channel parameters,
// statistics and the optimizer's buffers (float* below) are always f32.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "core/dtype.h"
#include "layers/cuda/kernel_math.h"  // Strided4, Window2d

namespace convnet::cuda {

// dst (+)= src elementwise over l.shape; dst and src may differ in type
// (f32 <-> bf16 / f16 conversions round to nearest even).
void strided_copy(DType dst_type, void* dst, DType src_type, const void* src, const Strided4& l,
                  bool accumulate, cudaStream_t stream);

// x *= factor (f32).
void scale(float* x, int64_t n, float factor, cudaStream_t stream);
// y (+)= factor * x in type t, computed in f32 (y may be x).
void scale_copy(DType t, void* y, const void* x, int64_t n, float factor, bool accumulate,
                cudaStream_t stream);
// y = a + b (y may alias a).
void add(DType t, const void* a, const void* b, void* y, int64_t n, cudaStream_t stream);
// y = max(x, 0) (y may alias x).
void relu_forward(DType t, const void* x, void* y, int64_t n, cudaStream_t stream);
// dx (+)= dy * (y > 0).
void relu_backward(DType t, const void* y, const void* dy, void* dx, int64_t n, bool accumulate,
                   cudaStream_t stream);

// y[n, ch, ...] += bias[ch] for an (N, C, HW) tensor (a convolution's bias
// under mixed precision).
void add_channel_bias(DType t, void* y, const float* bias, int64_t n, int64_t c, int64_t hw,
                      bool channels_last, cudaStream_t stream);
// sums[ch] += sum over (N, HW) of dy (a convolution's bias gradient).
void accumulate_channel_sums(DType t, const void* dy, float* sums, int64_t n, int64_t c, int64_t hw,
                             bool channels_last, cudaStream_t stream);

// Batch normalization with known per-channel statistics (mean, inv_std = 1 /
// sqrt(var + eps)): y = gamma * (x - mean) * inv_std + beta, then max(., 0)
// when relu. channels_last: x, y, dy, dx are NHWC (here and below).
void batch_norm_apply(DType t, const void* x, const float* mean, const float* inv_std,
                      const float* gamma, const float* beta, void* y, int64_t n, int64_t c,
                      int64_t hw, bool channels_last, bool relu, cudaStream_t stream);
// masked = dy where batch_norm_apply(x) > 0, else 0 (backward of a fused BN+ReLU).
void batch_norm_relu_mask(DType t, const void* x, const float* mean, const float* inv_std,
                          const float* gamma, const float* beta, const void* dy, void* masked,
                          int64_t n, int64_t c, int64_t hw, bool channels_last,
                          cudaStream_t stream);
// Backward of batch normalization with CONSTANT statistics (inference mode):
// dx (+)= dy * gamma * inv_std (dx may be null); dgamma += sum(dy * (x - mean)) * inv_std;
// dbeta += sum(dy), sums over (N, H, W).
void batch_norm_backward_fixed_stats(DType t, const void* x, const void* dy, const float* mean,
                                     const float* inv_std, const float* gamma, void* dx,
                                     bool accumulate, float* dgamma, float* dbeta, int64_t n,
                                     int64_t c, int64_t hw, bool channels_last,
                                     cudaStream_t stream);
// Training-mode batch normalization with the batch's own statistics (the
// GPU backend's path where cuDNN does not take the data type, or with
// CONVNET_CUDNN_BN=off):
// statistics: mean and biased variance over (N, HW) (two passes);
// inv_std = 1 / sqrt(var + eps); running_mean/var move by `momentum` towards
// the mean and the UNBIASED variance (PyTorch's rule).
// NCHW: one block per channel. NHWC: tiles of 32 channels x row groups
// (coalesced rows), partial sums in `scratch` (batch_norm_scratch_floats(c)
// floats of device memory; unused for NCHW) added in a fixed order, so the
// result is the same every run.
void batch_norm_statistics(DType t, const void* x, float* mean, float* inv_std, float* running_mean,
                           float* running_var, int64_t n, int64_t c, int64_t hw, bool channels_last,
                           double eps, double momentum, float* scratch, cudaStream_t stream);
// Floats of scratch the channels-last statistics and backward need for c channels.
int64_t batch_norm_scratch_floats(int64_t c);
// Backward through the batch statistics: with xhat = (x - mean) inv_std,
// dgamma += sum(dy xhat), dbeta += sum(dy), and (dx may be null)
// dx (+)= gamma inv_std (dy - sum(dy) / M - xhat sum(dy xhat) / M), M = N*HW.
// (NHWC as batch_norm_statistics, with its scratch.)
void batch_norm_backward_batch_stats(DType t, const void* x, const void* dy, const float* mean,
                                     const float* inv_std, const float* gamma, void* dx,
                                     bool accumulate, float* dgamma, float* dbeta, int64_t n,
                                     int64_t c, int64_t hw, bool channels_last, float* scratch,
                                     cudaStream_t stream);

// Per-step running statistics (layers/running_stats.h), per channel:
// sums += (mean, unbiased_var (m - 1) / m, mean^2) for a micro-batch of m
// values per channel; then once per step, from the sums of micro_batches
// micro-batches, running_mean and running_var move by momentum.
void batch_norm_add_statistics(const float* mean, const float* unbiased_var, int64_t m,
                               float* sum_mean, float* sum_var, float* sum_mean_sq, int64_t c,
                               cudaStream_t stream);
void batch_norm_step_update(const float* sum_mean, const float* sum_var, const float* sum_mean_sq,
                            int64_t micro_batches, int64_t m, double momentum, float* running_mean,
                            float* running_var, int64_t c, cudaStream_t stream);

// inv_std[c] = 1 / sqrt(var[c] + eps).
void inverse_std(const float* var, float* inv_std, int64_t c, double eps, cudaStream_t stream);

// Max pooling; argmax[i] is the index within its (h, w) plane of output i's
// maximum (the first one on ties; padding never wins).
void max_pool_forward(DType t, const void* x, void* y, int32_t* argmax, const Window2d& window,
                      cudaStream_t stream);
void max_pool_backward(DType t, const void* dy, const int32_t* argmax, void* dx, bool accumulate,
                       const Window2d& window, cudaStream_t stream);
// Average pooling; the divisor is kernel^2 when count_include_pad, else the
// number of window cells inside the input.
void avg_pool_forward(DType t, const void* x, void* y, const Window2d& window,
                      bool count_include_pad, cudaStream_t stream);
void avg_pool_backward(DType t, const void* dy, void* dx, bool accumulate, const Window2d& window,
                       bool count_include_pad, cudaStream_t stream);

// y[n, c] = mean over hw of x[n, c, :]; dx (+)= dy[n, c] / hw.
void global_avg_pool_forward(DType t, const void* x, void* y, int64_t n, int64_t c, int64_t hw,
                             bool channels_last, cudaStream_t stream);
void global_avg_pool_backward(DType t, const void* dy, void* dx, int64_t n, int64_t c, int64_t hw,
                              bool channels_last, bool accumulate, cudaStream_t stream);

// y = x * sigmoid(s[n, c]) over hw (y may alias x).
void channel_gate_forward(DType t, const void* x, const void* s, void* y, int64_t n, int64_t c,
                          int64_t hw, bool channels_last, cudaStream_t stream);
// dx (+)= dy * sigmoid(s) (dx may be null); ds (+)= sum_hw(dy * x) * sigmoid'(s) (ds may be null).
void channel_gate_backward(DType t, const void* x, const void* s, const void* dy, void* dx,
                           bool dx_accumulate, void* ds, bool ds_accumulate, int64_t n, int64_t c,
                           int64_t hw, bool channels_last, cudaStream_t stream);

// Softmax cross-entropy with label smoothing s over (n, k) f32 logits and
// int32 labels: row_loss[i] = logsumexp(z_i) - (1 - s) z_i[label] - s/k sum_j z_i[j];
// log_sum_exp[i] is kept for backward.
void softmax_cross_entropy_forward(const float* logits, const int32_t* labels, float* row_loss,
                                   float* log_sum_exp, int64_t n, int64_t k, float smoothing,
                                   cudaStream_t stream);
// dlogits (+)= (softmax(z) - ((1 - s) onehot + s/k)) / n.
void softmax_cross_entropy_backward(const float* logits, const int32_t* labels,
                                    const float* log_sum_exp, float* dlogits, bool accumulate,
                                    int64_t n, int64_t k, float smoothing, cudaStream_t stream);

// Training metrics of one forward, added to metrics[0..3] (f64, device):
// the sum of the finite row losses, the rows whose label is in the top 1 and
// top 5 (math::label_in_top_k), and 1 when any row loss is inf or NaN.
void accumulate_loss_metrics(const float* row_loss, const float* logits, const int32_t* labels,
                             int64_t n, int64_t k, double* metrics, cudaStream_t stream);

// One SGD step (torch.optim.SGD semantics, see layers/sgd.h) over [0, n) in
// one launch: d = grad_scale g + decay * w; v = first ? d : momentum v +
// (1 - dampening) d; d = nesterov ? d + momentum v : v; w -= lr d. v may be
// null (no momentum). The weight decay is per segment: element i takes
// decays[math::segment_of(i, ends, count)] (ends ascending, the last one n;
// device memory).
void sgd_step_segments(float* w, const float* g, float* v, int64_t n, const int64_t* ends,
                       const float* decays, int64_t count, float lr, float momentum, float keep,
                       bool first, bool nesterov, float grad_scale, cudaStream_t stream);

// *flag = 1 when any of x[0, n) is infinite or NaN (flag is left alone
// otherwise; the caller zeroes it): the overflow test of fp16 loss scaling.
void flag_nonfinite(const float* x, int64_t n, int32_t* flag, cudaStream_t stream);

}  // namespace convnet::cuda
