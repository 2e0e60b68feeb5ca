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
                            const Tensor& running_mean, const Tensor& running_var,
                            const Tensor& y) {
    const float one = 1.0f, zero = 0.0f;
    cudnnStatus_t status = CUDNN_STATUS_SUCCESS;
    if (is_persistent()) {
      status = cudnnBatchNormalizationForwardTrainingEx(
          context_.gpu().cudnn, CUDNN_BATCHNORM_SPATIAL_PERSISTENT, ops(), &one, &zero, x_.get(),
          cuda::act(x), nullptr, nullptr, x_.get(), cuda::act(y), param_.get(),
          cuda::device_ptr(weight), cuda::device_ptr(bias), options().momentum,
          cuda::device_ptr(running_mean), cuda::device_ptr(running_var), options().eps,
          saved_mean_.data<float>(), saved_inv_std_.data<float>(), activation(), workspace(),
          workspace_bytes_, reserve(), reserve_bytes_);
    } else if (path_ == BnPath::spatial) {
      status = cudnnBatchNormalizationForwardTraining(
          context_.gpu().cudnn, CUDNN_BATCHNORM_SPATIAL, &one, &zero, x_.get(), cuda::act(x),
          x_.get(), cuda::act(y), param_.get(), cuda::device_ptr(weight), cuda::device_ptr(bias),
          options().momentum, cuda::device_ptr(running_mean), cuda::device_ptr(running_var),
          options().eps, saved_mean_.data<float>(), saved_inv_std_.data<float>());
    } else {
      cuda::batch_norm_statistics(dtype_, cuda::act(x), saved_mean_.data<float>(),
                                  saved_inv_std_.data<float>(), cuda::device_ptr(running_mean),
                                  cuda::device_ptr(running_var), n(), c(), hw(), channels_last(),
                                  options().eps, options().momentum, reduction_scratch(), stream());
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
    while (!try_training_forward(x, weight, bias, running_mean, running_var, y)) {
    }
    trained_path_ = path_;
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
  Tensor saved_mean_, saved_inv_std_;     // (C) of the last forward
  const float* bias_for_mask_ = nullptr;  // the last forward's bias (fused ReLU backward)
};

}  // namespace

std::unique_ptr<BatchNorm2d> make_batch_norm2d_cudnn(Context& context, std::string name,
                                                     const BatchNormOptions& options,
                                                     const Shape& input_shape) {
  return std::make_unique<BatchNormCudnn>(context, std::move(name), options, input_shape);
}

}  // namespace convnet
