// DenseNet builders (Huang et al. 2017), torchvision's structure and names.
#pragma once

#include <vector>

#include "models/builder.h"

namespace convnet {

struct DenseNetConfig {
  int64_t growth_rate = 32;
  std::vector<int> blocks;       // dense layers per block
  int64_t init_features = 64;    // channels of the stem conv
  int64_t bn_size = 4;           // bottleneck width = bn_size * growth; 0: no bottleneck (3x3 only)
  double compression = 0.5;      // transition output = floor(compression * C)
  bool imagenet_stem = true;     // 7x7/2 conv + BN + ReLU + 3x3/2 max pool; else one 3x3 conv
  bool memory_efficient = true;  // Pleiss et al.: shared concatenation buffer per block
};

ValueId build_densenet(NetBuilder& builder, ValueId input, const DenseNetConfig& config,
                       int64_t num_classes);

}  // namespace convnet
