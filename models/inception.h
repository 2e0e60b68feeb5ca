// BN-Inception (Ioffe and Szegedy 2015) and SE-BN-Inception (Hu et al.
// 2018), as the SENet authors' Caffe definition models/SE-BN-Inception.prototxt
// (github.com/hujie-frank/SENet) builds them:
//
//   stem    conv1/7x7_s2 (64, 7x7/2), max pool 3x3/2, conv2/3x3_reduce (64,
//           1x1), conv2/3x3 (192, 3x3), max pool 3x3/2
//   modules 3a 3b 3c 4a 4b 4c 4d 4e 5a 5b, each the concatenation, in this
//           order, of [1x1] [3x3_reduce -> 3x3] [double3x3_reduce ->
//           double3x3a -> double3x3b] [pool -> pool_proj]; the pool is a 3x3/1
//           average (padding 1, counted) except in 5b (max); the reduction
//           modules 3c and 4e have no 1x1 branch, stride 2 in the 3x3 and the
//           double3x3b, and a 3x3/2 max pool passed through unprojected
//   SE      (se_bn_inception) after every module's concatenation:
//           x * sigmoid(up(relu(down(mean_hw(x))))), C/16 hidden channels,
//           1x1 convolutions with bias; no residual addition
//   head    average pooling (the prototxt's fixed 7x7 pool5 at 224x224,
//           global here, so that other sizes work), classifier
//
// Every convolution is bias-free and followed by BatchNorm and ReLU (Caffe's
// BatchNorm + Scale pair is one BatchNorm2d). Max pooling rounds up (Caffe's
// ceil mode). Parameter names are the prototxt's layer names with '/' as
// '_': conv1_7x7_s2.weight, conv1_7x7_s2_bn.{weight, bias, running_mean,
// running_var}, inception_3a_1x1_down.{weight, bias}, classifier.{weight,
// bias}. Every branch is a whole number of 16-channel blocks, so the net runs
// in the builder's activation layout, concatenations included.
#pragma once

#include "models/builder.h"

namespace convnet {

struct InceptionConfig {
  bool squeeze_excitation = false;
};

// Appends the network to builder's net; returns the logits value (N, num_classes).
ValueId build_bn_inception(NetBuilder& builder, ValueId input, const InceptionConfig& config,
                           int64_t num_classes);

// Whether an input side of `size` pixels gives equal branch sizes at every
// reduction module (their stride-2 convolutions round down, their max pools
// up: the input to 3c and 4e must be even) and a map of at least one pixel at
// the end. 224 and every multiple of 32 from 64 do.
bool bn_inception_takes_size(int64_t size);

}  // namespace convnet
