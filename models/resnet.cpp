// The residual family: ImageNet and CIFAR ResNets, pre-activation ResNets,
// ResNeXts and wide ResNets, and their squeeze-and-excitation variants,
// built from one config.
#include "models/resnet.h"

namespace convnet {
namespace {

std::string join(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

Conv2dOptions conv_options(int64_t in, int64_t out, int64_t kernel, int64_t stride) {
  return {.in_channels = in,
          .out_channels = out,
          .kernel = kernel,
          .stride = stride,
          .padding = kernel / 2};
}

class ResNetBuilder {
 public:
  ResNetBuilder(NetBuilder& b, const ResNetConfig& config) : b_(b), c_(config) {}

  ValueId build(ValueId x, int64_t num_classes) {
    int64_t channels = c_.stem_channels;
    if (c_.imagenet_stem) {
      x = b_.conv(x, "conv1", conv_options(b_.channels(x), channels, 7, 2));
      x = b_.batch_norm_relu(x, "bn1");
      x = b_.max_pool(x, "maxpool", {.kernel = 3, .stride = 2, .padding = 1});
    } else {
      x = b_.conv(x, "conv1", conv_options(b_.channels(x), channels, 3, 1));
      if (!c_.preact) x = b_.batch_norm_relu(x, "bn1");
    }
    for (int count : c_.blocks) total_blocks_ += count;
    for (std::size_t s = 0; s < c_.blocks.size(); ++s) {
      const int64_t planes = c_.widths[s];
      for (int i = 0; i < c_.blocks[s]; ++i) {
        const int64_t stride = (i == 0 && s > 0) ? 2 : 1;
        const std::string name = "layer" + std::to_string(s + 1) + "." + std::to_string(i);
        x = c_.preact ? preact_block(x, name, planes, stride) : block(x, name, planes, stride);
      }
    }
    if (c_.preact) x = b_.batch_norm_relu(x, "final_bn");
    x = b_.global_avg_pool(x, "avgpool");
    return b_.linear(x, "fc", num_classes);
  }

 private:
  int64_t expansion() const { return c_.bottleneck ? 4 : 1; }

  // The branch of the next block through stochastic depth, p growing
  // linearly from 0 (first block) to config.drop_path (last).
  ValueId drop_path(ValueId y, const std::string& name) {
    const int64_t b = block_++;
    const double p = total_blocks_ > 1 ? c_.drop_path * double(b) / double(total_blocks_ - 1) : 0;
    return b_.drop_path(y, join(name, "drop_path"), b, p);
  }

  // Post-activation block (He et al. 2015): branch ends with BN [+ SE], then add and ReLU.
  ValueId block(ValueId x, const std::string& name, int64_t planes, int64_t stride) {
    const int64_t in = b_.channels(x), out = planes * expansion();
    ValueId y;
    if (c_.bottleneck) {
      const int64_t s1 = c_.stride_in_1x1 ? stride : 1, s3 = c_.stride_in_1x1 ? 1 : stride;
      const int64_t width = planes * c_.width_per_group / 64 * c_.groups;
      Conv2dOptions grouped = conv_options(width, width, 3, s3);
      grouped.groups = c_.groups;
      y = b_.conv(x, join(name, "conv1"), conv_options(in, width, 1, s1));
      y = b_.batch_norm_relu(y, join(name, "bn1"));
      y = b_.conv(y, join(name, "conv2"), grouped);
      y = b_.batch_norm_relu(y, join(name, "bn2"));
      y = b_.conv(y, join(name, "conv3"), conv_options(width, out, 1, 1));
      y = b_.batch_norm(y, join(name, "bn3"));
    } else {
      y = b_.conv(x, join(name, "conv1"), conv_options(in, planes, 3, stride));
      y = b_.batch_norm_relu(y, join(name, "bn1"));
      y = b_.conv(y, join(name, "conv2"), conv_options(planes, out, 3, 1));
      y = b_.batch_norm(y, join(name, "bn2"));
    }
    if (c_.squeeze_excitation) y = b_.squeeze_excitation(y, join(name, "se"), 16);
    y = drop_path(y, name);
    ValueId shortcut = x;
    if (stride != 1 || in != out) {
      if (c_.pad_shortcut) {
        shortcut = b_.pad_shortcut(x, join(name, "shortcut"), out, stride);
      } else {
        shortcut = b_.conv(x, join(name, "downsample.0"), conv_options(in, out, 1, stride));
        shortcut = b_.batch_norm(shortcut, join(name, "downsample.1"));
      }
    }
    return b_.relu(b_.add(y, shortcut, join(name, "add")), join(name, "relu"));
  }

  // Pre-activation block (He et al. 2016): BN-ReLU-conv units, identity
  // addition; a projection shortcut reads the pre-activated input.
  ValueId preact_block(ValueId x, const std::string& name, int64_t planes, int64_t stride) {
    const int64_t in = b_.channels(x), out = planes * expansion();
    const ValueId pre = b_.batch_norm_relu(x, join(name, "bn1"));
    ValueId y;
    if (c_.bottleneck) {
      y = b_.conv(pre, join(name, "conv1"), conv_options(in, planes, 1, 1));
      y = b_.batch_norm_relu(y, join(name, "bn2"));
      y = b_.conv(y, join(name, "conv2"), conv_options(planes, planes, 3, stride));
      y = b_.batch_norm_relu(y, join(name, "bn3"));
      y = b_.conv(y, join(name, "conv3"), conv_options(planes, out, 1, 1));
    } else {
      y = b_.conv(pre, join(name, "conv1"), conv_options(in, planes, 3, stride));
      y = b_.batch_norm_relu(y, join(name, "bn2"));
      y = b_.conv(y, join(name, "conv2"), conv_options(planes, out, 3, 1));
    }
    if (c_.squeeze_excitation) y = b_.squeeze_excitation(y, join(name, "se"), 16);
    y = drop_path(y, name);
    ValueId shortcut = x;
    if (stride != 1 || in != out)
      shortcut = b_.conv(pre, join(name, "downsample.0"), conv_options(in, out, 1, stride));
    return b_.add(y, shortcut, join(name, "add"));
  }

  NetBuilder& b_;
  const ResNetConfig& c_;
  int64_t total_blocks_ = 0, block_ = 0;
};

}  // namespace

ValueId build_resnet(NetBuilder& builder, ValueId input, const ResNetConfig& config,
                     int64_t num_classes) {
  return ResNetBuilder(builder, config).build(input, num_classes);
}

}  // namespace convnet
