// BatchNorm2d on the GPU. Training forward and backward are cuDNN's batch
// normalization over the batch statistics (running variance updated with the
// unbiased batch variance, as PyTorch); inference, recompute and the
// fixed-statistics backward are kernels over the statistics saved by the
// last forward.
//
// The training path, chosen when the layer is built and stepped down (said
// once per kind and type) where cuDNN refuses it:
//   persistent_fused  NHWC fp16 with the fused ReLU: cuDNN's fused forward
//                     (cudnnBatchNormalizationForwardTrainingEx, persistent
//                     spatial mode, BN_ACTIVATION, with a workspace: cuDNN's
//                     only fused path; elsewhere the Ex call would quietly
//                     skip the activation, so it is not tried there);
//   persistent        other NHWC: the Ex calls in persistent spatial mode
//                     with a workspace and a per-layer reserve, as PyTorch
//                     does for channels-last (the fast NHWC kernels);
//   spatial           NCHW: the classic calls in spatial mode;
//   own_kernels       convnet's kernels (batch statistics, backward through
//                     them; one block per channel): where cuDNN rejects the
//                     activation type.
// CONVNET_CUDNN_BN=unfused | spatial | off starts at persistent (no fusing),
// spatial or own_kernels, to measure or compare them on a GPU.
//
// A fused ReLU's backward masks dy by recomputing the sign of the BN output
// from x, the saved statistics and the shift (bias) given to the last
// forward, so no mask is stored: the bias must not change between a forward
// and its backward (the update comes after). That backward is then the
// spatial one (the saved statistics are the same in every mode). A backward
// cuDNN refuses after taking the forward, and one that wants no dx, is
// convnet's kernels' (from then on, for a refusal).
// This file also holds the kernels (contracts in kernels.h): NCHW sums with
// one block per channel, channels-last ones with channel_sums.cuh's tiles.
#include "layers/cuda/channel_sums.cuh"
#include "layers/cuda/kernels.h"
#include "layers/cuda/launch.cuh"
#include "layers/running_stats.h"

namespace convnet::cuda {
namespace {

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

}  // namespace

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

void batch_norm_add_statistics(const float* mean, const float* unbiased_var, int64_t m,
                               float* sum_mean, float* sum_var, float* sum_mean_sq, int64_t c,
                               cudaStream_t stream) {
  const float biased = static_cast<float>(static_cast<double>(m - 1) / static_cast<double>(m));
  for_each("batch_norm_add_statistics", c, stream, [=] __device__(int64_t i) {
    running_stats::add(mean[i], unbiased_var[i] * biased, sum_mean + i, sum_var + i,
                       sum_mean_sq + i);
  });
}

void batch_norm_step_update(const float* sum_mean, const float* sum_var, const float* sum_mean_sq,
                            int64_t micro_batches, int64_t m, double momentum, float* running_mean,
                            float* running_var, int64_t c, cudaStream_t stream) {
  const double values = static_cast<double>(micro_batches) * static_cast<double>(m);
  for_each("batch_norm_step_update", c, stream, [=] __device__(int64_t i) {
    running_stats::update(sum_mean[i], sum_var[i], sum_mean_sq[i], micro_batches, values, momentum,
                          running_mean + i, running_var + i);
  });
}

}  // namespace convnet::cuda

#ifndef CONVNET_CUDA_ON_HOST  // the kernels alone run on the host (tests/cuda_on_host)
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "layers/batch_norm.h"
#include "layers/cuda/cudnn_util.h"

namespace convnet {
namespace {

enum class BnPath { persistent_fused, persistent, spatial, own_kernels };

const char* describe(BnPath path) {
  switch (path) {
    case BnPath::persistent_fused:
      return "fused BN+ReLU (persistent NHWC)";
    case BnPath::persistent:
      return "persistent NHWC batch normalization";
    case BnPath::spatial:
      return "spatial batch normalization";
    case BnPath::own_kernels:
      return "convnet's own batch-norm kernels";
  }
  return "?";
}

class BatchNormCudnn final : public BatchNorm2d {
 public:
  BatchNormCudnn(Context& context, std::string name, const BatchNormOptions& options,
                 const Shape& input_shape)
      : BatchNorm2d(std::move(name), options, input_shape),
        context_(context),
        dtype_(context.activation_dtype()) {
    cuda::require_gpu_layout(this->name(), options.layout);
    CONVNET_CHECK(options.eps >= CUDNN_BN_MIN_EPSILON, "layer ", this->name(), ": eps ",
                  options.eps, " is below cuDNN's minimum ", CUDNN_BN_MIN_EPSILON);
    // Under mixed precision x, y, dx, dy are bf16 / f16 and the scale,
    // shift and statistics f32, the combination cuDNN's batch norm takes.
    x_.set(input_shape, options.layout, dtype_);
    param_.set(Shape{options.channels});
    saved_mean_ = Tensor::empty(Shape{options.channels}, context.allocator());
    saved_inv_std_ = Tensor::empty(Shape{options.channels}, context.allocator());
    if (options.running_stats == RunningStats::per_step) {
      // cuDNN's running update with factor 1 leaves the batch mean and
      // unbiased variance here (1 * batch + 0 * finite zeros).
      batch_mean_ = Tensor::zeros(Shape{options.channels}, context.allocator());
      batch_var_ = Tensor::zeros(Shape{options.channels}, context.allocator());
    }
    CONVNET_CUDNN(cudnnSetActivationDescriptor(relu_.get(), CUDNN_ACTIVATION_RELU,
                                               CUDNN_NOT_PROPAGATE_NAN, 0.0));
    const char* env = std::getenv("CONVNET_CUDNN_BN");
    const auto env_is = [&](const char* v) { return env != nullptr && std::strcmp(env, v) == 0; };
    if (env_is("off")) {
      path_ = BnPath::own_kernels;
    } else if (!channels_last() || env_is("spatial")) {
      path_ = BnPath::spatial;
    } else if (options.fuse_relu && dtype_ == DType::f16 && options.channels % 4 == 0 &&
               !env_is("unfused")) {
      path_ = BnPath::persistent_fused;
    } else {
      path_ = BnPath::persistent;
    }
    while (is_persistent() && !prepare_persistent()) step_down(CUDNN_STATUS_NOT_SUPPORTED);
    // The mask scratch reaches its size now, not inside a step: growing it
    // there would cudaFree while NCCL may be launching (a possible deadlock).
    if (options.fuse_relu)
      context.scratch(Scratch::gpu_mask,
                      static_cast<std::size_t>(input_shape.numel()) * dtype_size(dtype_));
    if (channels_last()) reduction_scratch();  // for a step down to convnet's kernels
  }

 private:
  int64_t n() const { return input_shape()[0]; }
  int64_t c() const { return input_shape()[1]; }
  int64_t hw() const { return input_shape()[2] * input_shape()[3]; }
  bool channels_last() const { return options().layout == Layout::nhwc; }
  // The partial sums of convnet's channels-last kernels (null for NCHW).
  float* reduction_scratch() {
    if (!channels_last()) return nullptr;
    const auto bytes =
        static_cast<std::size_t>(cuda::batch_norm_scratch_floats(c())) * sizeof(float);
    return static_cast<float*>(context_.scratch(Scratch::reduction, bytes));
  }
  cudaStream_t stream() const { return context_.gpu().stream; }
  bool is_persistent() const {
    return path_ == BnPath::persistent_fused || path_ == BnPath::persistent;
  }
  bool fused() const { return path_ == BnPath::persistent_fused; }
  cudnnBatchNormOps_t ops() const {
    return fused() ? CUDNN_BATCHNORM_OPS_BN_ACTIVATION : CUDNN_BATCHNORM_OPS_BN;
  }
  cudnnActivationDescriptor_t activation() const { return fused() ? relu_.get() : nullptr; }

  // Sizes the Ex calls' workspace (shared scratch) and reserve (the fused
  // path's is scratch no later call reads; the plain path's is this layer's
  // own, read by its backward). False where cuDNN refuses the path.
  bool prepare_persistent() {
    cudnnHandle_t h = context_.gpu().cudnn;
    const auto mode = CUDNN_BATCHNORM_SPATIAL_PERSISTENT;
    std::size_t forward = 0, backward = 0, reserve = 0;
    // The data descriptors are x's, dz none (as PyTorch asks); the queries
    // read only shapes and types. A step down after a refusal at run time
    // allocates here during the first training forward, before any
    // gradient is in flight over NCCL.
    const cudnnTensorDescriptor_t x = x_.get();
    cudnnStatus_t status = cudnnGetBatchNormalizationForwardTrainingExWorkspaceSize(
        h, mode, ops(), x, x, x, param_.get(), activation(), &forward);
    if (status == CUDNN_STATUS_SUCCESS && !fused())
      status = cudnnGetBatchNormalizationBackwardExWorkspaceSize(
          h, mode, ops(), x, x, x, nullptr, x, param_.get(), activation(), &backward);
    if (status == CUDNN_STATUS_SUCCESS)
      status = cudnnGetBatchNormalizationTrainingExReserveSpaceSize(h, mode, ops(), activation(),
                                                                    x_.get(), &reserve);
    if (status == CUDNN_STATUS_SUCCESS && fused() && forward == 0)
      status = CUDNN_STATUS_NOT_SUPPORTED;  // no workspace: no fused kernel
    if (!cuda::refused(status)) CONVNET_CUDNN(status);
    if (status != CUDNN_STATUS_SUCCESS) return false;
    workspace_bytes_ = std::max(forward, backward);
    reserve_bytes_ = reserve;
    context_.scratch(Scratch::workspace, workspace_bytes_);
    if (fused()) {
      context_.scratch(Scratch::reserve, reserve_bytes_);
    } else if (reserve_bytes_ > 0) {
      reserve_ = Tensor::empty(Shape{static_cast<int64_t>((reserve_bytes_ + 3) / 4)},
                               context_.allocator());
    }
    return true;
  }
  void* workspace() {
    return context_.scratch(Scratch::workspace, std::max<std::size_t>(workspace_bytes_, 1));
  }
  void* reserve() {
    if (reserve_bytes_ == 0) return nullptr;
    return fused() ? context_.scratch(Scratch::reserve, reserve_bytes_) : reserve_.raw_data();
  }

  // Moves to the next path after cuDNN refused the current one.
  void step_down(cudnnStatus_t status) {
    const BnPath from = path_;
    path_ = from == BnPath::persistent_fused ? BnPath::persistent
            : from == BnPath::persistent     ? BnPath::spatial
                                             : BnPath::own_kernels;
    CONVNET_CHECK(
        from != BnPath::own_kernels && (path_ != BnPath::own_kernels || dtype_ != DType::f32),
        "layer ", name(), ": cuDNN refuses f32 batch normalization: ", cudnnGetErrorString(status));
    static bool said[4][3] = {};  // per path left and DType
    bool& once = said[static_cast<int>(from)][static_cast<int>(dtype_)];
    if (!once)
      std::fprintf(stderr,
                   "convnet: cuDNN refuses %s for %s %s (%s, first at layer %s); using %s\n",
                   describe(from), to_string(dtype_).c_str(), to_string(input_shape()).c_str(),
                   cudnnGetErrorString(status), name().c_str(), describe(path_));
    once = true;
  }

  // One training forward on the current path: false (nothing computed)
  // where cuDNN refused it, after stepping down.
  bool try_training_forward(const Tensor& x, const Tensor& weight, const Tensor& bias,
                            const Tensor& running_mean, const Tensor& running_var, double momentum,
                            const Tensor& y) {
    const float one = 1.0f, zero = 0.0f;
    cudnnStatus_t status = CUDNN_STATUS_SUCCESS;
    if (is_persistent()) {
      status = cudnnBatchNormalizationForwardTrainingEx(
          context_.gpu().cudnn, CUDNN_BATCHNORM_SPATIAL_PERSISTENT, ops(), &one, &zero, x_.get(),
          cuda::act(x), nullptr, nullptr, x_.get(), cuda::act(y), param_.get(),
          cuda::device_ptr(weight), cuda::device_ptr(bias), momentum,
          cuda::device_ptr(running_mean), cuda::device_ptr(running_var), options().eps,
          saved_mean_.data<float>(), saved_inv_std_.data<float>(), activation(), workspace(),
          workspace_bytes_, reserve(), reserve_bytes_);
    } else if (path_ == BnPath::spatial) {
      status = cudnnBatchNormalizationForwardTraining(
          context_.gpu().cudnn, CUDNN_BATCHNORM_SPATIAL, &one, &zero, x_.get(), cuda::act(x),
          x_.get(), cuda::act(y), param_.get(), cuda::device_ptr(weight), cuda::device_ptr(bias),
          momentum, cuda::device_ptr(running_mean), cuda::device_ptr(running_var), options().eps,
          saved_mean_.data<float>(), saved_inv_std_.data<float>());
    } else {
      cuda::batch_norm_statistics(dtype_, cuda::act(x), saved_mean_.data<float>(),
                                  saved_inv_std_.data<float>(), cuda::device_ptr(running_mean),
                                  cuda::device_ptr(running_var), n(), c(), hw(), channels_last(),
                                  options().eps, momentum, reduction_scratch(), stream());
      apply(x, weight, bias, y);  // with the fused ReLU
      return true;
    }
    if (status == CUDNN_STATUS_SUCCESS) {
      if (options().fuse_relu && !fused())
        cuda::relu_forward(dtype_, cuda::act(y), cuda::act(y), y.numel(), stream());
      return true;
    }
    if (!cuda::refused(status)) CONVNET_CUDNN(status);
    step_down(status);
    while (is_persistent() && !prepare_persistent()) step_down(CUDNN_STATUS_NOT_SUPPORTED);
    return false;
  }

  void apply(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& y) {
    cuda::require_dtype(name(), dtype_, {&x, &y});
    bias_for_mask_ = cuda::device_ptr(bias);
    cuda::batch_norm_apply(dtype_, cuda::act(x), saved_mean_.data<float>(),
                           saved_inv_std_.data<float>(), cuda::device_ptr(weight),
                           cuda::device_ptr(bias), cuda::act(y), n(), c(), hw(), channels_last(),
                           options().fuse_relu, stream());
  }

  void forward_impl(Mode mode, const Tensor& x, const Tensor& weight, const Tensor& bias,
                    const Tensor& running_mean, const Tensor& running_var,
                    const Tensor& y) override {
    CONVNET_CHECK(running_mean.is_contiguous() && running_var.is_contiguous(), "layer ", name(),
                  ": running statistics must be contiguous on the GPU");
    if (mode == Mode::inference) {
      cuda::copy(saved_mean_, running_mean, stream());
      cuda::inverse_std(cuda::device_ptr(running_var), saved_inv_std_.data<float>(), c(),
                        options().eps, stream());
      apply(x, weight, bias, y);
      return;
    }
    cuda::require_dtype(name(), dtype_, {&x, &y});
    bias_for_mask_ = cuda::device_ptr(bias);
    const bool per_step = options().running_stats == RunningStats::per_step;
    const Tensor& mean_to = per_step ? batch_mean_ : running_mean;
    const Tensor& var_to = per_step ? batch_var_ : running_var;
    const double momentum = per_step ? 1.0 : options().momentum;
    while (!try_training_forward(x, weight, bias, mean_to, var_to, momentum, y)) {
    }
    trained_path_ = path_;
  }

  void add_batch_statistics_impl(const BatchStatSums& sums) override {
    cuda::batch_norm_add_statistics(batch_mean_.data<float>(), batch_var_.data<float>(), n() * hw(),
                                    cuda::device_ptr(sums.mean), cuda::device_ptr(sums.var),
                                    cuda::device_ptr(sums.mean_sq), c(), stream());
  }

  void update_running_statistics_impl(const BatchStatSums& sums, int64_t micro_batches,
                                      const Tensor& running_mean,
                                      const Tensor& running_var) override {
    cuda::batch_norm_step_update(cuda::device_ptr(sums.mean), cuda::device_ptr(sums.var),
                                 cuda::device_ptr(sums.mean_sq), micro_batches, n() * hw(),
                                 options().momentum, cuda::device_ptr(running_mean),
                                 cuda::device_ptr(running_var), c(), stream());
  }

  void recompute_impl(const Tensor& x, const Tensor& weight, const Tensor& bias,
                      const Tensor& y) override {
    apply(x, weight, bias, y);
  }

  void backward_impl(Mode mode, const Tensor& x, const Tensor& weight, const Tensor& dy,
                     const Tensor& dx, GradMode dx_mode, const Tensor& dweight,
                     const Tensor& dbias) override {
    cuda::require_dtype(name(), dtype_, {&x, &dy, &dx});
    const void* grad = cuda::act(dy);
    if (options().fuse_relu) {
      Tensor masked =
          context_.scratch_tensor(Scratch::gpu_mask, input_shape(), Layout::nchw, dtype_);
      cuda::batch_norm_relu_mask(dtype_, cuda::act(x), saved_mean_.data<float>(),
                                 saved_inv_std_.data<float>(), cuda::device_ptr(weight),
                                 bias_for_mask_, grad, masked.raw_data(), n(), c(), hw(),
                                 channels_last(), stream());
      grad = masked.raw_data();
    }
    const bool accumulate = dx_mode == GradMode::accumulate;
    if (mode == Mode::inference) {
      cuda::batch_norm_backward_fixed_stats(
          dtype_, cuda::act(x), grad, saved_mean_.data<float>(), saved_inv_std_.data<float>(),
          cuda::device_ptr(weight), cuda::act(dx), accumulate, cuda::device_ptr(dweight),
          cuda::device_ptr(dbias), n(), c(), hw(), channels_last(), stream());
      return;
    }
    // The saved statistics are the same in every mode, so convnet's kernels
    // can take over any backward. They do where no dx is wanted (cuDNN's
    // calls would need an input-sized output to discard).
    const auto own_backward = [&] {
      cuda::batch_norm_backward_batch_stats(
          dtype_, cuda::act(x), grad, saved_mean_.data<float>(), saved_inv_std_.data<float>(),
          cuda::device_ptr(weight), dx.defined() ? cuda::act(dx) : nullptr, accumulate,
          cuda::device_ptr(dweight), cuda::device_ptr(dbias), n(), c(), hw(), channels_last(),
          reduction_scratch(), stream());
    };
    if (trained_path_ == BnPath::own_kernels || !dx.defined()) return own_backward();
    void* dx_ptr = cuda::act(dx);
    const float one = 1.0f, zero = 0.0f;
    if (trained_path_ == BnPath::persistent && path_ == BnPath::persistent) {
      const cudnnStatus_t status = cudnnBatchNormalizationBackwardEx(
          context_.gpu().cudnn, CUDNN_BATCHNORM_SPATIAL_PERSISTENT, CUDNN_BATCHNORM_OPS_BN, &one,
          accumulate ? &one : &zero, &one, &one, x_.get(), cuda::act(x), nullptr, nullptr, x_.get(),
          grad, nullptr, nullptr, x_.get(), dx_ptr, param_.get(), cuda::device_ptr(weight), nullptr,
          cuda::device_ptr(dweight), cuda::device_ptr(dbias), options().eps,
          saved_mean_.data<float>(), saved_inv_std_.data<float>(), nullptr, workspace(),
          workspace_bytes_, reserve(), reserve_bytes_);
      if (status == CUDNN_STATUS_SUCCESS) return;
      if (!cuda::refused(status)) CONVNET_CUDNN(status);
      step_down(status);  // the next forward is spatial; this backward is below
    }
    const cudnnStatus_t status = cudnnBatchNormalizationBackward(
        context_.gpu().cudnn, CUDNN_BATCHNORM_SPATIAL, &one, accumulate ? &one : &zero, &one, &one,
        x_.get(), cuda::act(x), x_.get(), grad, x_.get(), dx_ptr, param_.get(),
        cuda::device_ptr(weight), cuda::device_ptr(dweight), cuda::device_ptr(dbias), options().eps,
        saved_mean_.data<float>(), saved_inv_std_.data<float>());
    if (status == CUDNN_STATUS_SUCCESS) return;
    if (!cuda::refused(status)) CONVNET_CUDNN(status);
    // A forward cuDNN took but a backward it refuses: convnet's kernels from now on.
    CONVNET_CHECK(dtype_ != DType::f32, "layer ", name(),
                  ": cuDNN refuses the f32 batch-norm backward: ", cudnnGetErrorString(status));
    static bool said[3] = {};  // per DType
    if (!said[static_cast<int>(dtype_)])
      std::fprintf(stderr,
                   "convnet: cuDNN refuses the spatial batch-norm backward for %s %s (%s, first at "
                   "layer %s); using %s\n",
                   to_string(dtype_).c_str(), to_string(input_shape()).c_str(),
                   cudnnGetErrorString(status), name().c_str(), describe(BnPath::own_kernels));
    said[static_cast<int>(dtype_)] = true;
    path_ = BnPath::own_kernels;
    own_backward();
  }

  Context& context_;
  DType dtype_;  // of x, y, dx, dy
  cuda::TensorDescriptor x_, param_;
  cuda::ActivationDescriptor relu_;
  BnPath path_ = BnPath::spatial;                        // of the next training forward
  BnPath trained_path_ = BnPath::spatial;                // of the last training forward
  std::size_t workspace_bytes_ = 0, reserve_bytes_ = 0;  // the persistent paths'
  Tensor reserve_;  // the persistent (unfused) path's reserve, from forward to backward
  Tensor saved_mean_, saved_inv_std_;  // (C) of the last forward
  Tensor batch_mean_, batch_var_;      // (C) per_step: the last training forward's (unbiased var)
  const float* bias_for_mask_ = nullptr;  // the last forward's bias (fused ReLU backward)
};

}  // namespace

std::unique_ptr<BatchNorm2d> make_batch_norm2d_cudnn(Context& context, std::string name,
                                                     const BatchNormOptions& options,
                                                     const Shape& input_shape) {
  return std::make_unique<BatchNormCudnn>(context, std::move(name), options, input_shape);
}

}  // namespace convnet
#endif  // CONVNET_CUDA_ON_HOST
