// 2-D batch normalization over the channels of an (N, C, H, W) input, as
// torch.nn.BatchNorm2d with affine=True and track_running_stats=True:
//
//   y = weight * (x - mean) / sqrt(var + eps) + bias       per channel c
//
// Training mode normalizes with the batch statistics over (N, H, W): mean and
// the biased variance (divided by N*H*W). It then updates the running
// statistics as PyTorch does, with the UNBIASED batch variance:
//   running_mean = (1 - momentum) * running_mean + momentum * mean
//   running_var  = (1 - momentum) * running_var  + momentum * var * M / (M - 1),  M = N*H*W
// so training needs M > 1 (checked by forward). Inference mode normalizes with
// running_mean and running_var and leaves them unchanged.
// With RunningStats::per_step (models use it) a training forward leaves the
// running statistics alone: add_batch_statistics() adds its mean and
// variance to a step's sums and update_running_statistics() moves the
// running statistics once per step (layers/running_stats.h), so that they do
// not depend on how ranks and gradient accumulation split the step.
//
// Shapes:
//   x, y                      (N, C, H, W)    contiguous
//   weight, bias              (C)             the affine scale (gamma) and shift (beta)
//   running_mean, running_var (C)             buffers, updated in place by training forward
//
// Backward differentiates the LAST forward (x must be that forward's input):
// after a training forward it uses the batch mean and variance saved inside
// the layer and the gradient flows through them, as in PyTorch training;
// after an inference forward the statistics are the running ones, saved at
// that forward, and are constants (as PyTorch in eval mode). Calling backward
// before any forward is an error.
//
// Gradients (see layers/layer.h): dweight and dbias accumulate; dx overwrites
// or accumulates as dx_mode says, and is skipped when dx is undefined.
#pragma once

#include <memory>
#include <string>

#include "layers/layer.h"
#include "layers/reference.h"

namespace convnet {

enum class RunningStats {
  per_forward,  // every training forward updates them (torch.nn.BatchNorm2d)
  per_step,     // once per step from the sums of its micro-batches
};

// A step's sums of micro-batch statistics (each (C), f32, contiguous, on the
// layer's device): batch means, biased batch variances, squared batch means.
struct BatchStatSums {
  Tensor mean, var, mean_sq;
};

struct BatchNormOptions {
  int64_t channels = 0;
  double eps = 1e-5;             // added to the variance; must be > 0
  double momentum = 0.1;         // weight of the new batch statistics in [0, 1]
  Layout layout = Layout::nchw;  // of x, y, dy and dx
  // y = relu(batch_norm(x)) in one pass (oneDNN's fused kernel); backward then
  // takes dy with respect to the ReLU output and uses a mask kept by forward.
  bool fuse_relu = false;
  RunningStats running_stats = RunningStats::per_forward;
};

class BatchNorm2d {
 public:
  // Validates the wiring and builds the backend's primitives for this shape.
  static std::unique_ptr<BatchNorm2d> create(Context& context, std::string name,
                                             const BatchNormOptions& options,
                                             const Shape& input_shape);
  virtual ~BatchNorm2d() = default;

  const std::string& name() const { return name_; }
  const BatchNormOptions& options() const { return options_; }
  const Shape& input_shape() const { return input_shape_; }
  const Shape& output_shape() const { return input_shape_; }
  Shape param_shape() const { return Shape{options_.channels}; }  // weight, bias, running stats

  // y = weight * (x - mean) / sqrt(var + eps) + bias, with batch statistics
  // (training; updates the running statistics and saves the batch statistics
  // for backward) or the running statistics (inference).
  void forward(Mode mode, const Tensor& x, const Tensor& weight, const Tensor& bias,
               const Tensor& running_mean, const Tensor& running_var, const Tensor& y);
  // Recomputes the last forward's output for the same x, from the
  // statistics it saved, without touching the running statistics (the
  // memory-efficient DenseNet recomputes BN outputs during backward this way).
  void recompute(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& y);
  // per_step: sums += the last forward's batch statistics (a training forward).
  void add_batch_statistics(const BatchStatSums& sums);
  // per_step: the running statistics move once towards the statistics of the
  // `micro_batches` micro-batches whose sums these are (layers/running_stats.h).
  void update_running_statistics(const BatchStatSums& sums, int64_t micro_batches,
                                 const Tensor& running_mean, const Tensor& running_var);
  // Gradients of the last forward: dx (per dx_mode), dweight += sum(dy * x_hat),
  // dbias += sum(dy).
  void backward(const Tensor& x, const Tensor& weight, const Tensor& dy, const Tensor& dx,
                GradMode dx_mode, const Tensor& dweight, const Tensor& dbias);

 protected:
  BatchNorm2d(std::string name, const BatchNormOptions& options, const Shape& input_shape);
  virtual void forward_impl(Mode mode, const Tensor& x, const Tensor& weight, const Tensor& bias,
                            const Tensor& running_mean, const Tensor& running_var,
                            const Tensor& y) = 0;
  virtual void recompute_impl(const Tensor& x, const Tensor& weight, const Tensor& bias,
                              const Tensor& y) = 0;
  virtual void add_batch_statistics_impl(const BatchStatSums& sums) = 0;
  virtual void update_running_statistics_impl(const BatchStatSums& sums, int64_t micro_batches,
                                              const Tensor& running_mean,
                                              const Tensor& running_var) = 0;
  // `mode` is that of the last forward.
  virtual void backward_impl(Mode mode, const Tensor& x, const Tensor& weight, const Tensor& dy,
                             const Tensor& dx, GradMode dx_mode, const Tensor& dweight,
                             const Tensor& dbias) = 0;

 private:
  std::string name_;
  BatchNormOptions options_;
  Shape input_shape_;          // (N, C, H, W)
  bool forward_done_ = false;  // a forward has saved statistics for backward
  Mode last_mode_ = Mode::training;
};

std::unique_ptr<BatchNorm2d> make_batch_norm2d_onednn(Context& context, std::string name,
                                                      const BatchNormOptions& options,
                                                      const Shape& input_shape);
// The GPU backend (builds with CUDA only).
std::unique_ptr<BatchNorm2d> make_batch_norm2d_cudnn(Context& context, std::string name,
                                                     const BatchNormOptions& options,
                                                     const Shape& input_shape);

namespace ref {
struct BatchNormForward {
  Array y;                          // (N, C, H, W)
  Array mean, var;                  // (C) the statistics y was normalized with
  Array running_mean, running_var;  // (C) after the update (unchanged in inference)
};
BatchNormForward batch_norm_forward(const BatchNormOptions& options, Mode mode, const Array& x,
                                    const Array& weight, const Array& bias,
                                    const Array& running_mean, const Array& running_var);
struct BatchNormGrads {
  Array dx, dweight, dbias;
};
// Gradients of <y, dy> where y was normalized with (mean, var): in training
// mode these are the batch statistics of x and the gradient flows through
// them; in inference mode they are constants (the running statistics).
BatchNormGrads batch_norm_backward(const BatchNormOptions& options, Mode mode, const Array& x,
                                   const Array& weight, const Array& dy, const Array& mean,
                                   const Array& var);
}  // namespace ref

}  // namespace convnet
