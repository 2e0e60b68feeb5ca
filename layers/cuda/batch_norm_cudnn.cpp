// BatchNorm2d on the GPU. Training forward and backward are cuDNN's spatial
// batch normalization (running variance updated with the unbiased batch
// variance, as PyTorch); inference, recompute and the fixed-statistics
// backward are kernels over the statistics saved by the last forward.
//
// Fused BN+ReLU (options.fuse_relu): in NHWC fp16 training the forward is
// cuDNN's fused one (cudnnBatchNormalizationForwardTrainingEx, persistent
// spatial mode, BN_ACTIVATION, with a workspace: cuDNN's only fused path);
// for other types, or
// where cuDNN refuses it (said once), the ReLU runs in place after the
// normalization. Its backward masks dy by recomputing the sign of the BN
// output from x, the saved statistics and the shift (bias) given to the last
// forward, so no mask is stored: the bias must not change between a forward
// and its backward (the update comes after); the backward itself is cuDNN's
// spatial one either way (the saved statistics are the same). CONVNET_CUDNN_BN=unfused keeps
// the ReLU separate (to measure what fusing gains).
//
// Training with own kernels instead of cuDNN (batch statistics, backward
// through them; one block per channel): where cuDNN rejects the activation
// type (bf16 on a cuDNN without it), said once on stderr, or everywhere with
// CONVNET_CUDNN_BN=off (to compare the two on a GPU).
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "layers/batch_norm.h"
#include "layers/cuda/cudnn_util.h"

namespace convnet {
namespace {

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
    const char* use_cudnn = std::getenv("CONVNET_CUDNN_BN");
    own_kernels_ = use_cudnn != nullptr && std::strcmp(use_cudnn, "off") == 0;
    const bool unfused = use_cudnn != nullptr && std::strcmp(use_cudnn, "unfused") == 0;
    // cuDNN fuses the activation only on its NHWC fp16 path with a
    // workspace (C a multiple of 4); elsewhere the Ex call would quietly run
    // the plain normalization, so the fused call is not even tried there.
    try_fused_ = options.fuse_relu && channels_last() && dtype_ == DType::f16 &&
                 options.channels % 4 == 0 && !unfused && !own_kernels_;
    if (try_fused_) {
      CONVNET_CUDNN(cudnnSetActivationDescriptor(relu_.get(), CUDNN_ACTIVATION_RELU,
                                                 CUDNN_NOT_PROPAGATE_NAN, 0.0));
      try_fused_ = query_fused_sizes();
    }
    // Scratch reaches its size now, not inside a step: growing it there
    // would cudaFree while NCCL may be launching (a possible deadlock).
    if (try_fused_) {
      context.scratch(Scratch::workspace, fused_workspace_bytes_);
      context.scratch(Scratch::reserve, fused_reserve_bytes_);
    }
    if (options.fuse_relu)
      context.scratch(Scratch::gpu_mask,
                      static_cast<std::size_t>(input_shape.numel()) * dtype_size(dtype_));
  }

 private:
  int64_t n() const { return input_shape()[0]; }
  int64_t c() const { return input_shape()[1]; }
  int64_t hw() const { return input_shape()[2] * input_shape()[3]; }
  bool channels_last() const { return options().layout == Layout::nhwc; }
  cudaStream_t stream() const { return context_.gpu().stream; }

  // The fused forward's workspace and reserve sizes; false (with the
  // reason, once) where cuDNN has no fused BN+ReLU for this tensor.
  bool query_fused_sizes() {
    cudnnHandle_t h = context_.gpu().cudnn;
    cudnnStatus_t status = cudnnGetBatchNormalizationForwardTrainingExWorkspaceSize(
        h, CUDNN_BATCHNORM_SPATIAL_PERSISTENT, CUDNN_BATCHNORM_OPS_BN_ACTIVATION, x_.get(), nullptr,
        x_.get(), param_.get(), relu_.get(), &fused_workspace_bytes_);
    if (status == CUDNN_STATUS_SUCCESS)
      status = cudnnGetBatchNormalizationTrainingExReserveSpaceSize(
          h, CUDNN_BATCHNORM_SPATIAL_PERSISTENT, CUDNN_BATCHNORM_OPS_BN_ACTIVATION, relu_.get(),
          x_.get(), &fused_reserve_bytes_);
    if (status == CUDNN_STATUS_SUCCESS && fused_workspace_bytes_ == 0)
      status = CUDNN_STATUS_NOT_SUPPORTED;  // no workspace: no fused kernel
    return fused_accepted(status);
  }

  // True on success; false for cuDNN's "not for this type or shape" (said
  // once per type); throws on any other error.
  bool fused_accepted(cudnnStatus_t status) const {
    if (status == CUDNN_STATUS_SUCCESS) return true;
    if (!cuda::refused(status)) CONVNET_CUDNN(status);
    static bool said[3] = {false, false, false};  // per DType
    bool& once = said[static_cast<int>(dtype_)];
    if (!once)
      std::fprintf(stderr,
                   "convnet: cuDNN has no fused BN+ReLU for %s NHWC %s (%s, first at layer %s); "
                   "the ReLU runs as its own pass\n",
                   to_string(dtype_).c_str(), to_string(input_shape()).c_str(),
                   cudnnGetErrorString(status), name().c_str());
    once = true;
    return false;
  }

  // cuDNN's fused training forward y = max(BN(x), 0) with the batch
  // statistics; false where cuDNN refuses it (nothing was computed).
  bool fused_training_forward(const Tensor& x, const Tensor& weight, const Tensor& bias,
                              const Tensor& running_mean, const Tensor& running_var,
                              const Tensor& y) {
    const float one = 1.0f, zero = 0.0f;
    void* workspace = context_.scratch(Scratch::workspace, fused_workspace_bytes_);
    void* reserve = fused_reserve_bytes_ == 0
                        ? nullptr
                        : context_.scratch(Scratch::reserve, fused_reserve_bytes_);
    return fused_accepted(cudnnBatchNormalizationForwardTrainingEx(
        context_.gpu().cudnn, CUDNN_BATCHNORM_SPATIAL_PERSISTENT, CUDNN_BATCHNORM_OPS_BN_ACTIVATION,
        &one, &zero, x_.get(), cuda::act(x), nullptr, nullptr, x_.get(), cuda::act(y), param_.get(),
        cuda::device_ptr(weight), cuda::device_ptr(bias), options().momentum,
        cuda::device_ptr(running_mean), cuda::device_ptr(running_var), options().eps,
        saved_mean_.data<float>(), saved_inv_std_.data<float>(), relu_.get(), workspace,
        fused_workspace_bytes_, reserve, fused_reserve_bytes_));
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
    if (!own_kernels_ && try_fused_) {
      if (fused_training_forward(x, weight, bias, running_mean, running_var, y)) return;
      try_fused_ = false;
    }
    if (!own_kernels_) {
      const float one = 1.0f, zero = 0.0f;
      const cudnnStatus_t status = cudnnBatchNormalizationForwardTraining(
          context_.gpu().cudnn, CUDNN_BATCHNORM_SPATIAL, &one, &zero, x_.get(), cuda::act(x),
          x_.get(), cuda::act(y), param_.get(), cuda::device_ptr(weight), cuda::device_ptr(bias),
          options().momentum, cuda::device_ptr(running_mean), cuda::device_ptr(running_var),
          options().eps, saved_mean_.data<float>(), saved_inv_std_.data<float>());
      if (status != CUDNN_STATUS_SUCCESS && dtype_ != DType::f32 && cuda::refused(status)) {
        static bool said = false;
        if (!said)
          std::fprintf(stderr,
                       "convnet: cuDNN batch normalization rejects %s activations (%s); using "
                       "convnet's own batch-norm kernels\n",
                       to_string(dtype_).c_str(), cudnnGetErrorString(status));
        said = true;
        own_kernels_ = true;
      } else {
        CONVNET_CUDNN(status);
      }
    }
    if (own_kernels_) {
      cuda::batch_norm_statistics(dtype_, cuda::act(x), saved_mean_.data<float>(),
                                  saved_inv_std_.data<float>(), cuda::device_ptr(running_mean),
                                  cuda::device_ptr(running_var), n(), c(), hw(), channels_last(),
                                  options().eps, options().momentum, stream());
      apply(x, weight, bias, y);  // with the fused ReLU
      return;
    }
    if (options().fuse_relu)
      cuda::relu_forward(dtype_, cuda::act(y), cuda::act(y), y.numel(), stream());
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
    if (own_kernels_) {
      cuda::batch_norm_backward_batch_stats(
          dtype_, cuda::act(x), grad, saved_mean_.data<float>(), saved_inv_std_.data<float>(),
          cuda::device_ptr(weight), cuda::act(dx), accumulate, cuda::device_ptr(dweight),
          cuda::device_ptr(dbias), n(), c(), hw(), channels_last(), stream());
      return;
    }
    void* dx_ptr =
        dx.defined()
            ? cuda::act(dx)
            : context_.scratch_tensor(Scratch::discarded, input_shape(), Layout::nchw, dtype_)
                  .raw_data();
    const float one = 1.0f, zero = 0.0f;
    CONVNET_CUDNN(cudnnBatchNormalizationBackward(
        context_.gpu().cudnn, CUDNN_BATCHNORM_SPATIAL, &one, accumulate ? &one : &zero, &one, &one,
        x_.get(), cuda::act(x), x_.get(), grad, x_.get(), dx_ptr, param_.get(),
        cuda::device_ptr(weight), cuda::device_ptr(dweight), cuda::device_ptr(dbias), options().eps,
        saved_mean_.data<float>(), saved_inv_std_.data<float>()));
  }

  Context& context_;
  DType dtype_;  // of x, y, dx, dy
  cuda::TensorDescriptor x_, param_;
  cuda::ActivationDescriptor relu_;
  bool try_fused_ = false;  // cuDNN's fused BN+ReLU training forward (NHWC)
  std::size_t fused_workspace_bytes_ = 0, fused_reserve_bytes_ = 0;
  Tensor saved_mean_, saved_inv_std_;     // (C) of the last forward
  const float* bias_for_mask_ = nullptr;  // the last forward's bias (fused ReLU backward)
  bool own_kernels_ = false;              // training statistics by kernels.h, not cuDNN
};

}  // namespace

std::unique_ptr<BatchNorm2d> make_batch_norm2d_cudnn(Context& context, std::string name,
                                                     const BatchNormOptions& options,
                                                     const Shape& input_shape) {
  return std::make_unique<BatchNormCudnn>(context, std::move(name), options, input_shape);
}

}  // namespace convnet
