// The model zoo: every model convnet trains, by name, and the function that
// builds a Net for one of them.
//
// Families (see zoo.cpp for the configs):
//   ImageNet ResNet v1.5 (torchvision) resnet18..152, optionally v1;
//   CIFAR ResNet (He et al. 2015 sec. 4.2, option A shortcuts) resnet20..1202;
//   pre-activation ResNet (He et al. 2016) preact_resnet18..200 and CIFAR 110/164/1001;
//   SE-ResNet (Hu et al. 2018, timm naming) se_resnet50..152, CIFAR se_resnet20..110,
//   se_preact_resnet164;
//   ResNeXt, SE-ResNeXt and wide ResNets (torchvision, timm; CIFAR wrn_28_10, wrn_40_4);
//   BN-Inception and SE-BN-Inception (the SENet authors' Caffe prototxt);
//   DenseNet (torchvision) densenet121..264, CIFAR DenseNet-BC and densenet40_k12.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "models/net.h"

namespace convnet {

struct ModelSpec {
  std::string name;
  int64_t num_classes = 0;  // 0: the model's default (1000 ImageNet, 10 CIFAR)
  int64_t in_channels = 3;
  bool memory_efficient = true;     // DenseNet: shared concatenation buffers (Pleiss et al.)
  bool resnet_v1 = false;           // ImageNet ResNet bottlenecks: stride in the first 1x1 conv
  bool compute_input_grad = false;  // also compute d(output)/d(input) (tests, saliency)
  // Keep activations in the CPU's blocked layout (Context::blocked_layout(),
  // nchw8c or nchw16c) where the family supports it
  // (ResNets, pre-activation and SE variants, memory-efficient CIFAR DenseNets);
  // plain NCHW otherwise.
  bool blocked_layout = true;
  // Keep the input and activations channels-last (NHWC), the layout of
  // cuDNN's tensor-core kernels and of oneDNN's AMX bf16 kernels (ResNet
  // families; memory-efficient DenseNets on the CPU; DenseNets stay NCHW on
  // the GPU).
  bool channels_last = false;
  // Stochastic depth of residual models (models/drop_path.h): the last
  // block's drop probability in [0, 1), and the seed of the draws.
  double drop_path = 0;
  uint64_t seed = 0;
  // Every BatchNorm's momentum (PyTorch's default 0.1): in (0, 1].
  double bn_momentum = 0.1;
};

struct ModelInfo {
  std::string name;
  std::string family;       // "resnet", "preact_resnet", "se_resnet", "resnext", "inception", ...
  int64_t default_classes;  // 1000 or 10
  int64_t default_image_size;  // 224 or 32
  // The smallest height and width the model takes: every pooling keeps at
  // least one pixel (DenseNets' transitions halve without padding).
  int64_t min_image_size = 1;
  // Grouped convolutions (ResNeXt): channels-last on the CPU, input included.
  bool grouped = false;
};

// Every model name convnet accepts, in display order.
const std::vector<ModelInfo>& model_zoo();
// Throws convnet::Error listing the valid names when `name` is unknown.
const ModelInfo& model_info(const std::string& name);

// Builds the model for input (N, in_channels, H, W), registering (or, for a
// finalized store, re-binding) its parameters, and plans its memory.
std::unique_ptr<Net> build_model(Context& context, const ModelSpec& spec, ParamStore& store,
                                 const Shape& input_shape);

// Fills parameters and buffers as torchvision initializes them: conv weights
// Kaiming normal (fan_out, ReLU gain), BN weight 1 and bias 0, running mean 0
// and variance 1, Linear and conv biases uniform(+-1/sqrt(fan_in)) (DenseNet's
// classifier bias 0). Deterministic in `seed`. A store on the GPU is filled
// through a host copy, with the same values.
void initialize_parameters(ParamStore& store, uint64_t seed);
// The layout build_model gives the net's input on `backend`: nhwc for
// channels-last models (ModelSpec::channels_last, except DenseNets on the
// GPU and the Inceptions, which run plain: fill it with NHWC images), else nchw.
Layout model_input_layout(Backend backend, const ModelSpec& spec);

}  // namespace convnet
