#include "layers/batch_norm.h"

namespace convnet {

BatchNorm2d::BatchNorm2d(std::string name, const BatchNormOptions& options,
                         const Shape& input_shape)
    : name_(std::move(name)), options_(options), input_shape_(input_shape) {
  CONVNET_CHECK(input_shape.rank() == 4 && input_shape.all_positive(), "layer ", name_,
                ": input shape ", input_shape, " must be (N, C, H, W) with every extent > 0");
  CONVNET_CHECK(options.channels > 0, "layer ", name_, ": channels must be > 0, got ",
                options.channels);
  CONVNET_CHECK(input_shape[1] == options.channels, "layer ", name_, ": input shape ", input_shape,
                " has ", input_shape[1], " channels, expected ", options.channels);
  check_layout(name_, input_shape, options.layout);
  CONVNET_CHECK(options.eps > 0, "layer ", name_, ": eps must be > 0, got ", options.eps);
  CONVNET_CHECK(options.momentum >= 0 && options.momentum <= 1, "layer ", name_,
                ": momentum must be in [0, 1], got ", options.momentum);
}

std::unique_ptr<BatchNorm2d> BatchNorm2d::create(Context& context, std::string name,
                                                 const BatchNormOptions& options,
                                                 const Shape& input_shape) {
  return create_on_backend(context, make_batch_norm2d_onednn,
                           CONVNET_GPU_FACTORY(make_batch_norm2d_cudnn), std::move(name), options,
                           input_shape);
}

void BatchNorm2d::forward(Mode mode, const Tensor& x, const Tensor& weight, const Tensor& bias,
                          const Tensor& running_mean, const Tensor& running_var, const Tensor& y) {
  check_tensor(name_, "input", x, input_shape_, options_.layout);
  check_tensor(name_, "weight", weight, param_shape());
  check_tensor(name_, "bias", bias, param_shape());
  check_tensor(name_, "running mean", running_mean, param_shape(), Strides::any);
  check_tensor(name_, "running variance", running_var, param_shape(), Strides::any);
  check_tensor(name_, "output", y, output_shape(), options_.layout);
  // The unbiased variance of a single value is undefined (PyTorch raises the same error).
  CONVNET_CHECK(mode == Mode::inference || input_shape_.numel() / options_.channels > 1, "layer ",
                name_, ": expected more than 1 value per channel when training, got input shape ",
                input_shape_);
  forward_impl(mode, x, weight, bias, running_mean, running_var, y);
  forward_done_ = true;
  last_mode_ = mode;
}

void BatchNorm2d::add_batch_statistics(const BatchStatSums& sums) {
  CONVNET_CHECK(options_.running_stats == RunningStats::per_step, "layer ", name_,
                ": batch statistics are summed only with per-step running statistics");
  CONVNET_CHECK(forward_done_ && last_mode_ == Mode::training, "layer ", name_,
                ": batch statistics need a training forward first");
  for (const Tensor* t : {&sums.mean, &sums.var, &sums.mean_sq})
    check_tensor(name_, "statistics sum", *t, param_shape());
  add_batch_statistics_impl(sums);
}

void BatchNorm2d::update_running_statistics(const BatchStatSums& sums, int64_t micro_batches,
                                            const Tensor& running_mean, const Tensor& running_var) {
  CONVNET_CHECK(options_.running_stats == RunningStats::per_step, "layer ", name_,
                ": a step update of per-forward running statistics");
  CONVNET_CHECK(micro_batches > 0, "layer ", name_, ": a step of ", micro_batches,
                " micro-batches");
  for (const Tensor* t : {&sums.mean, &sums.var, &sums.mean_sq, &running_mean, &running_var})
    check_tensor(name_, "statistics", *t, param_shape());
  update_running_statistics_impl(sums, micro_batches, running_mean, running_var);
}

void BatchNorm2d::recompute(const Tensor& x, const Tensor& weight, const Tensor& bias,
                            const Tensor& y) {
  CONVNET_CHECK(forward_done_, "layer ", name_,
                ": recompute needs the statistics of a forward, and none has run");
  check_tensor(name_, "input", x, input_shape_, options_.layout);
  check_tensor(name_, "weight", weight, param_shape());
  check_tensor(name_, "bias", bias, param_shape());
  check_tensor(name_, "output", y, output_shape(), options_.layout);
  recompute_impl(x, weight, bias, y);
}

void BatchNorm2d::backward(const Tensor& x, const Tensor& weight, const Tensor& dy,
                           const Tensor& dx, GradMode dx_mode, const Tensor& dweight,
                           const Tensor& dbias) {
  CONVNET_CHECK(forward_done_, "layer ", name_,
                ": backward needs the statistics of a forward, and none has run");
  check_tensor(name_, "input", x, input_shape_, options_.layout);
  check_tensor(name_, "weight", weight, param_shape());
  check_tensor(name_, "output gradient", dy, output_shape(), options_.layout);
  if (dx.defined()) check_tensor(name_, "input gradient", dx, input_shape_, options_.layout);
  check_tensor(name_, "weight gradient", dweight, param_shape());
  check_tensor(name_, "bias gradient", dbias, param_shape());
  backward_impl(last_mode_, x, weight, dy, dx, dx_mode, dweight, dbias);
}

}  // namespace convnet
