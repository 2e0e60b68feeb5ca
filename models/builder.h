// NetBuilder: the vocabulary model builders use to describe a network. Each
// call registers the op's parameters in the ParamStore under torchvision's
// state_dict names (name + ".weight", ".bias", ".running_mean", ...), builds
// the layer for its input shape and appends the op to the Net.
//
// Layouts: with a blocked activation layout (nchw8c or nchw16c, the CPU's
// Context::blocked_layout()) convolutions over spatial maps write that layout
// (a channel count that is not a multiple of the block pads the last block),
// and the ops after them keep their input's layout, so a ResNet or a
// memory-efficient DenseNet runs blocked end to end (oneDNN's direct kernels,
// no reorders). Option A shortcuts work in every layout; squeeze-and-excitation
// gates need blocked channels that are a multiple of the block. Concatenation
// requires plain input, or blocked inputs of whole blocks each (BN-Inception's
// branches); the naive dense block builds plain.
#pragma once

#include <string>
#include <vector>

#include "layers/avg_pool2d.h"
#include "layers/batch_norm.h"
#include "layers/conv2d.h"
#include "layers/linear.h"
#include "layers/max_pool2d.h"
#include "models/net.h"

namespace convnet {

// A model's BatchNorm (RunningStats::per_step) on its store entries: forward
// with the entries' parameters and running statistics, and in training mode
// its batch statistics added to the store's step sums; then, once per step,
// the running statistics updated from the (allreduced) sums and
// num_batches_tracked incremented.
void model_batch_norm_forward(BatchNorm2d& bn, ParamStore& store, const BatchNormEntries& entries,
                              Mode mode, const Tensor& x, const Tensor& y);
void model_batch_norm_step(BatchNorm2d& bn, ParamStore& store, const BatchNormEntries& entries,
                           int64_t micro_batches);

class NetBuilder {
 public:
  NetBuilder(Context& context, Net& net, ParamStore& store)
      : context_(context), net_(net), store_(store) {}

  // The layout of spatial convolution outputs (and so of the ops after them):
  // nchw (default), nchw8c or nchw16c (the CPU's blocked layouts; channels
  // that are not a multiple of the block pad the last block) or nhwc
  // (channels-last: the GPU's tensor cores, the CPU's AMX bf16 kernels).
  void set_activation_layout(Layout layout);
  // The BatchNorms' momentum: the weight of a step's statistics in the
  // running ones (PyTorch's 0.1 by default).
  void set_bn_momentum(double momentum) { bn_momentum_ = momentum; }
  double bn_momentum() const { return bn_momentum_; }
  const Shape& shape(ValueId v) const { return net_.shape(v); }
  Layout layout(ValueId v) const { return net_.layout(v); }
  int64_t channels(ValueId v) const { return net_.shape(v)[1]; }

  // Conv2d with NAME.weight (C_out, C_in/g, K, K) [and NAME.bias (C_out)].
  ValueId conv(ValueId x, const std::string& name, const Conv2dOptions& options);
  // BatchNorm2d with NAME.{weight, bias, running_mean, running_var, num_batches_tracked}.
  ValueId batch_norm(ValueId x, const std::string& name);
  ValueId relu(ValueId x, const std::string& name);
  // relu(batch_norm(x)) as one fused op (BN's parameters under NAME).
  ValueId batch_norm_relu(ValueId x, const std::string& name);
  ValueId max_pool(ValueId x, const std::string& name, const MaxPool2dOptions& options);
  ValueId avg_pool(ValueId x, const std::string& name, const AvgPool2dOptions& options);
  // (N, C, H, W) -> (N, C)
  ValueId global_avg_pool(ValueId x, const std::string& name);
  // Linear with NAME.weight (out, in) and NAME.bias (out).
  ValueId linear(ValueId x, const std::string& name, int64_t out_features);
  ValueId add(ValueId a, ValueId b, const std::string& name);
  ValueId concat(const std::vector<ValueId>& inputs, const std::string& name);
  // Squeeze-and-excitation (Hu et al.): x * sigmoid(fc2(relu(fc1(gap(x))))), with
  // fc1/fc2 1x1 convs with bias named NAME.fc1 / NAME.fc2 (timm's naming).
  ValueId squeeze_excitation(ValueId x, const std::string& name, int64_t reduction);
  // The same block with its two convolutions named `down` and `up` (the SENet
  // authors' Caffe names, e.g. inception_3a_1x1_down / inception_3a_1x1_up).
  ValueId squeeze_excitation(ValueId x, const std::string& name, int64_t reduction,
                             const std::string& down, const std::string& up);
  // Stochastic depth of residual block `block` with drop probability p
  // (models/drop_path.h); the identity when p is 0.
  ValueId drop_path(ValueId x, const std::string& name, int64_t block, double p);
  // Option A shortcut (He et al. 2015, sec. 4.2): subsample by `stride` and pad
  // channels with zeros (half before, half after) up to out_channels.
  ValueId pad_shortcut(ValueId x, const std::string& name, int64_t out_channels, int64_t stride);

  Context& context() { return context_; }
  Net& net() { return net_; }
  ParamStore& store() { return store_; }

 private:
  Context& context_;
  Net& net_;
  ValueId add_batch_norm(ValueId x, const std::string& name, bool fuse_relu);

  ParamStore& store_;
  Layout activation_layout_ = Layout::nchw;
  double bn_momentum_ = 0.1;
};

}  // namespace convnet
