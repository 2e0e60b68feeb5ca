// BatchNorm2d on oneDNN: training forward, inference forward (global stats)
// and backward primitives are built once in the constructor, with plain NCHW
// memory. oneDNN computes the batch mean and biased variance but does not
// keep running statistics, so their momentum update is a loop over channels.
#include <oneapi/dnnl/dnnl.hpp>

#include "core/onednn.h"
#include "layers/batch_norm.h"
#include "layers/running_stats.h"

namespace convnet {
namespace {

using dnnl::memory;
using tag = memory::format_tag;
using flags = dnnl::normalization_flags;

class BatchNorm2dOnednn final : public BatchNorm2d {
 public:
  BatchNorm2dOnednn(Context& context, std::string name, const BatchNormOptions& options,
                    const Shape& input_shape)
      : BatchNorm2d(std::move(name), options, input_shape),
        context_(context),
        rt_(context.onednn()) {
    onednn_call("building batch norm " + this->name(), [&] { build(); });
  }

 private:
  void build() {
    // x, y and their gradients in the activation type (bf16 under mixed
    // precision); scale, shift, statistics and their gradients in f32.
    x_md_ = onednn_desc(input_shape(), options().layout, context_.activation_dtype());
    c_md_ = memory::desc(param_shape().dims(), memory::data_type::f32, tag::x);
    const auto& engine = rt_.engine;
    const float eps = static_cast<float>(options().eps);
    const flags affine = flags::use_scale | flags::use_shift |
                         (options().fuse_relu ? flags::fuse_norm_relu : flags::none);

    dnnl::batch_normalization_forward::desc train_desc(dnnl::prop_kind::forward_training, x_md_,
                                                       eps, affine);
    train_pd_ = dnnl::batch_normalization_forward::primitive_desc(train_desc, engine);
    train_ = dnnl::batch_normalization_forward(train_pd_);

    // With a fused ReLU the inference pass also records the ReLU mask (as a
    // training-kind pass with given statistics), so that it can be differentiated.
    dnnl::batch_normalization_forward::desc infer_desc(
        options().fuse_relu ? dnnl::prop_kind::forward_training
                            : dnnl::prop_kind::forward_inference,
        x_md_, eps, affine | flags::use_global_stats);
    const dnnl::batch_normalization_forward::primitive_desc infer_pd(infer_desc, engine);
    infer_ = dnnl::batch_normalization_forward(infer_pd);

    dnnl::batch_normalization_backward::desc bwd_desc(dnnl::prop_kind::backward, x_md_, x_md_, eps,
                                                      affine);
    bwd_ = dnnl::batch_normalization_backward(
        dnnl::batch_normalization_backward::primitive_desc(bwd_desc, engine, train_pd_));
    // After an inference forward the statistics are constants.
    dnnl::batch_normalization_backward::desc bwd_global_desc(
        dnnl::prop_kind::backward, x_md_, x_md_, eps, affine | flags::use_global_stats);
    bwd_global_ = dnnl::batch_normalization_backward(
        dnnl::batch_normalization_backward::primitive_desc(bwd_global_desc, engine, infer_pd));

    if (options().fuse_relu) {
      const int64_t floats =
          static_cast<int64_t>((train_pd_.workspace_desc().get_size() + 3) / sizeof(float));
      relu_mask_ = Tensor::empty(Shape{std::max<int64_t>(floats, 1)}, context_.allocator());
      mask_md_ = train_pd_.workspace_desc();
    }
    // The training forward's batch statistics, kept for backward.
    mean_ = Tensor::empty(param_shape(), context_.allocator());
    variance_ = Tensor::empty(param_shape(), context_.allocator());
    // oneDNN 2.6 backward with use_shift fails with invalid_arguments unless a
    // SHIFT memory is passed, although the gradients do not depend on it.
    unused_shift_ = Tensor::zeros(param_shape(), context_.allocator());
    // oneDNN overwrites its outputs; parameter gradients accumulate through these.
    dweight_scratch_ = Tensor::empty(param_shape(), context_.allocator());
    dbias_scratch_ = Tensor::empty(param_shape(), context_.allocator());
  }

  memory mem(const memory::desc& md, const Tensor& t) const {
    return onednn_memory(md, rt_.engine, t);
  }
  // The fused ReLU's mask (an empty memory, ignored by oneDNN, without fusion).
  memory mask_memory() const {
    return options().fuse_relu ? memory(mask_md_, rt_.engine, relu_mask_.raw_data()) : memory();
  }

  void forward_impl(Mode mode, const Tensor& x, const Tensor& weight, const Tensor& bias,
                    const Tensor& running_mean, const Tensor& running_var,
                    const Tensor& y) override {
    const bool training = mode == Mode::training;
    if (!training) {
      // Saved so that backward and recompute use the statistics of this forward.
      mean_.copy_from(running_mean);
      variance_.copy_from(running_var);
    }
    normalize(training ? train_ : infer_, "forward", x, weight, bias, y);
    if (training && options().running_stats == RunningStats::per_forward)
      update_running_stats(running_mean, running_var);
  }

  void add_batch_statistics_impl(const BatchStatSums& sums) override {
    const float* mean = mean_.data<float>();
    const float* variance = variance_.data<float>();
    float* sum_mean = sums.mean.data<float>();
    float* sum_var = sums.var.data<float>();
    float* sum_mean_sq = sums.mean_sq.data<float>();
    for (int64_t c = 0; c < options().channels; ++c)
      running_stats::add(mean[c], variance[c], sum_mean + c, sum_var + c, sum_mean_sq + c);
  }

  void update_running_statistics_impl(const BatchStatSums& sums, int64_t micro_batches,
                                      const Tensor& running_mean,
                                      const Tensor& running_var) override {
    const double values =
        static_cast<double>(micro_batches * (input_shape().numel() / options().channels));
    for (int64_t c = 0; c < options().channels; ++c)
      running_stats::update(sums.mean.data<float>()[c], sums.var.data<float>()[c],
                            sums.mean_sq.data<float>()[c], micro_batches, values,
                            options().momentum, running_mean.data<float>() + c,
                            running_var.data<float>() + c);
  }

  // The inference primitive normalizes with given statistics: here the saved ones.
  void recompute_impl(const Tensor& x, const Tensor& weight, const Tensor& bias,
                      const Tensor& y) override {
    normalize(infer_, "recompute", x, weight, bias, y);
  }

  // Runs a forward primitive with the layer's statistics (mean_, variance_:
  // written by the training primitive, read by the inference one).
  void normalize(const dnnl::batch_normalization_forward& primitive, const char* what,
                 const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& y) {
    onednn_call("batch norm " + name() + " " + what, [&] {
      primitive.execute(rt_.stream, {{DNNL_ARG_SRC, mem(x_md_, x)},
                                     {DNNL_ARG_SCALE, mem(c_md_, weight)},
                                     {DNNL_ARG_SHIFT, mem(c_md_, bias)},
                                     {DNNL_ARG_MEAN, mem(c_md_, mean_)},
                                     {DNNL_ARG_VARIANCE, mem(c_md_, variance_)},
                                     {DNNL_ARG_DST, mem(x_md_, y)},
                                     {DNNL_ARG_WORKSPACE, mask_memory()}});
      rt_.stream.wait();
    });
  }

  // running = (1 - m) * running + m * batch, with the unbiased batch variance (as PyTorch).
  void update_running_stats(const Tensor& running_mean, const Tensor& running_var) const {
    const double m = options().momentum;
    const double count = static_cast<double>(input_shape().numel() / options().channels);
    const double unbias = count / (count - 1);
    const float* mean = mean_.data<float>();
    const float* variance = variance_.data<float>();
    float* rm = running_mean.data<float>();
    float* rv = running_var.data<float>();
    const int64_t rm_stride = running_mean.strides()[0], rv_stride = running_var.strides()[0];
    for (int64_t c = 0; c < options().channels; ++c) {
      float& mean_c = rm[c * rm_stride];
      float& var_c = rv[c * rv_stride];
      mean_c = static_cast<float>((1 - m) * mean_c + m * mean[c]);
      var_c = static_cast<float>((1 - m) * var_c + m * variance[c] * unbias);
    }
  }

  void backward_impl(Mode mode, const Tensor& x, const Tensor& weight, const Tensor& dy,
                     const Tensor& dx, GradMode dx_mode, const Tensor& dweight,
                     const Tensor& dbias) override {
    // The primitive always computes diff_src; it goes to scratch unless it overwrites dx.
    const bool direct = dx.defined() && dx_mode == GradMode::overwrite;
    const Tensor target =
        direct ? dx
               : context_.scratch_tensor(Scratch::activation, input_shape(), options().layout,
                                         context_.activation_dtype());
    onednn_call("batch norm " + name() + " backward", [&] {
      (mode == Mode::training ? bwd_ : bwd_global_)
          .execute(rt_.stream, {{DNNL_ARG_SRC, mem(x_md_, x)},
                                {DNNL_ARG_MEAN, mem(c_md_, mean_)},
                                {DNNL_ARG_VARIANCE, mem(c_md_, variance_)},
                                {DNNL_ARG_DIFF_DST, mem(x_md_, dy)},
                                {DNNL_ARG_SCALE, mem(c_md_, weight)},
                                {DNNL_ARG_SHIFT, mem(c_md_, unused_shift_)},
                                {DNNL_ARG_DIFF_SRC, mem(x_md_, target)},
                                {DNNL_ARG_DIFF_SCALE, mem(c_md_, dweight_scratch_)},
                                {DNNL_ARG_DIFF_SHIFT, mem(c_md_, dbias_scratch_)},
                                {DNNL_ARG_WORKSPACE, mask_memory()}});
      rt_.stream.wait();
    });
    if (dx.defined() && !direct) add_into(dx, target);
    add_into(dweight, dweight_scratch_);
    add_into(dbias, dbias_scratch_);
  }

  Context& context_;
  OnednnRuntime& rt_;
  memory::desc x_md_;  // (N, C, H, W) for x, y, dy, dx
  memory::desc c_md_;  // (C) for weight, bias, statistics and their gradients
  dnnl::batch_normalization_forward::primitive_desc train_pd_;
  dnnl::batch_normalization_forward train_, infer_;
  dnnl::batch_normalization_backward bwd_, bwd_global_;
  Tensor mean_;          // (C) mean used by the last forward (batch or running)
  Tensor variance_;      // (C) variance used by the last forward (biased batch or running)
  Tensor unused_shift_;  // (C) zeros, only to satisfy the backward primitive
  Tensor relu_mask_;     // the fused ReLU's mask (oneDNN workspace), when fused
  memory::desc mask_md_;
  Tensor dweight_scratch_;  // (C)
  Tensor dbias_scratch_;    // (C)
};

}  // namespace

std::unique_ptr<BatchNorm2d> make_batch_norm2d_onednn(Context& context, std::string name,
                                                      const BatchNormOptions& options,
                                                      const Shape& input_shape) {
  return std::make_unique<BatchNorm2dOnednn>(context, std::move(name), options, input_shape);
}

}  // namespace convnet
