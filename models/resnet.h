// Builders for the residual family from a small config.
#pragma once

#include <vector>

#include "models/builder.h"

namespace convnet {

struct ResNetConfig {
  std::vector<int> blocks;      // residual blocks per stage
  std::vector<int64_t> widths;  // planes per stage (bottleneck output is 4x)
  bool bottleneck = false;
  bool imagenet_stem = true;  // 7x7/2 conv + BN + ReLU + 3x3/2 max pool; else one 3x3 conv
  int64_t stem_channels = 64;
  bool preact = false;  // He et al. 2016 pre-activation blocks, final BN-ReLU
  bool squeeze_excitation = false;
  bool pad_shortcut = false;   // option A (CIFAR) instead of 1x1 projection shortcuts
  bool stride_in_1x1 = false;  // ResNet v1 bottleneck (torchvision is v1.5: stride in the 3x3)
  // Post-activation bottlenecks as torchvision's ResNeXt and wide ResNets:
  // the 3x3 convolution is grouped, and the bottleneck is
  // planes * width_per_group / 64 * groups wide (64 and 1: ResNet).
  int64_t groups = 1;
  int64_t width_per_group = 64;
  // Stochastic depth (models/drop_path.h): the last block's drop probability.
  double drop_path = 0;
};

// Appends the network to builder's net; returns the logits value (N, num_classes).
ValueId build_resnet(NetBuilder& builder, ValueId input, const ResNetConfig& config,
                     int64_t num_classes);

}  // namespace convnet
