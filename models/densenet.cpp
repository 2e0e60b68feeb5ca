#include "models/densenet.h"

#include "models/dense_block.h"

namespace convnet {
namespace {

// The naive dense block: every layer reads a fresh concatenation of all
// earlier feature maps (memory quadratic in depth).
ValueId naive_dense_block(NetBuilder& b, ValueId x, const std::string& name,
                          const DenseNetConfig& c, int layers) {
  std::vector<ValueId> features{x};
  for (int j = 0; j < layers; ++j) {
    const std::string layer = name + ".denselayer" + std::to_string(j + 1);
    ValueId in = features.size() == 1 ? features[0] : b.concat(features, layer + ".concat");
    const int64_t channels = b.channels(in);
    ValueId y = b.batch_norm_relu(in, layer + ".norm1");
    if (c.bn_size > 0) {
      const int64_t width = c.bn_size * c.growth_rate;
      y = b.conv(y, layer + ".conv1", {.in_channels = channels, .out_channels = width});
      y = b.batch_norm_relu(y, layer + ".norm2");
      y = b.conv(y, layer + ".conv2",
                 {.in_channels = width, .out_channels = c.growth_rate, .kernel = 3, .padding = 1});
    } else {
      y = b.conv(
          y, layer + ".conv1",
          {.in_channels = channels, .out_channels = c.growth_rate, .kernel = 3, .padding = 1});
    }
    features.push_back(y);
  }
  return b.concat(features, name + ".concat");
}

}  // namespace

ValueId build_densenet(NetBuilder& b, ValueId x, const DenseNetConfig& c, int64_t num_classes) {
  const int64_t in = b.channels(x);
  if (c.imagenet_stem) {
    x = b.conv(x, "features.conv0",
               {.in_channels = in,
                .out_channels = c.init_features,
                .kernel = 7,
                .stride = 2,
                .padding = 3});
    x = b.batch_norm_relu(x, "features.norm0");
    x = b.max_pool(x, "features.pool0", {.kernel = 3, .stride = 2, .padding = 1});
  } else {
    x = b.conv(x, "features.conv0",
               {.in_channels = in, .out_channels = c.init_features, .kernel = 3, .padding = 1});
  }
  const int num_blocks = static_cast<int>(c.blocks.size());
  for (int i = 0; i < num_blocks; ++i) {
    const std::string block = "features.denseblock" + std::to_string(i + 1);
    x = c.memory_efficient ? add_dense_block(b, x, block, c.blocks[i], c.growth_rate, c.bn_size)
                           : naive_dense_block(b, x, block, c, c.blocks[i]);
    if (i + 1 < num_blocks) {
      const std::string t = "features.transition" + std::to_string(i + 1);
      const int64_t channels = b.channels(x);
      const int64_t out = static_cast<int64_t>(c.compression * channels);
      x = b.batch_norm_relu(x, t + ".norm");
      x = b.conv(x, t + ".conv", {.in_channels = channels, .out_channels = out});
      x = b.avg_pool(x, t + ".pool", {.kernel = 2, .stride = 2});
    }
  }
  const std::string final_norm = "features.norm" + std::to_string(num_blocks + 1);
  x = b.batch_norm_relu(x, final_norm);
  x = b.global_avg_pool(x, "avgpool");
  return b.linear(x, "classifier", num_classes);
}

}  // namespace convnet
