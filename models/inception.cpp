#include "models/inception.h"

#include "layers/window.h"

namespace convnet {
namespace {

// The widths of one module's branches; 0: the branch is absent (1x1 and
// pool_proj in the reduction modules).
struct Module {
  const char* name;
  int64_t b1x1, reduce3x3, out3x3, reduce_double, out_double, pool_proj;
  bool reduction = false;  // stride 2, max pool passed through
  bool max_pool = false;   // 5b: a max instead of an average pool before pool_proj
};

const Module kModules[] = {
    {"inception_3a", 64, 64, 64, 64, 96, 32},
    {"inception_3b", 64, 64, 96, 64, 96, 64},
    {"inception_3c", 0, 128, 160, 64, 96, 0, true},
    {"inception_4a", 224, 64, 96, 96, 128, 128},
    {"inception_4b", 192, 96, 128, 96, 128, 128},
    {"inception_4c", 160, 128, 160, 128, 160, 128},
    {"inception_4d", 96, 128, 192, 160, 192, 128},
    {"inception_4e", 0, 128, 192, 192, 256, 0, true},
    {"inception_5a", 352, 192, 320, 160, 224, 128},
    {"inception_5b", 352, 192, 320, 192, 224, 128, false, true},
};

class InceptionBuilder {
 public:
  InceptionBuilder(NetBuilder& b, const InceptionConfig& config) : b_(b), c_(config) {}

  ValueId build(ValueId x, int64_t num_classes) {
    x = unit(x, "conv1_7x7_s2", 64, 7, 2);
    x = b_.max_pool(x, "pool1_3x3_s2", {.kernel = 3, .stride = 2, .ceil_mode = true});
    x = unit(x, "conv2_3x3_reduce", 64, 1, 1);
    x = unit(x, "conv2_3x3", 192, 3, 1);
    x = b_.max_pool(x, "pool2_3x3_s2", {.kernel = 3, .stride = 2, .ceil_mode = true});
    for (const Module& m : kModules) x = module(x, m);
    x = b_.global_avg_pool(x, "pool5_7x7_s1");
    return b_.linear(x, "classifier", num_classes);
  }

 private:
  // Convolution (no bias), BatchNorm and ReLU: NAME.weight and NAME_bn.*.
  ValueId unit(ValueId x, const std::string& name, int64_t out, int64_t kernel, int64_t stride) {
    x = b_.conv(x, name,
                {.in_channels = b_.channels(x),
                 .out_channels = out,
                 .kernel = kernel,
                 .stride = stride,
                 .padding = kernel / 2});
    return b_.batch_norm_relu(x, name + "_bn");
  }

  ValueId module(ValueId x, const Module& m) {
    const std::string n = m.name;
    const int64_t stride = m.reduction ? 2 : 1;
    std::vector<ValueId> branches;
    if (m.b1x1 > 0) branches.push_back(unit(x, n + "_1x1", m.b1x1, 1, 1));
    ValueId y = unit(x, n + "_3x3_reduce", m.reduce3x3, 1, 1);
    branches.push_back(unit(y, n + "_3x3", m.out3x3, 3, stride));
    y = unit(x, n + "_double3x3_reduce", m.reduce_double, 1, 1);
    y = unit(y, n + "_double3x3a", m.out_double, 3, 1);
    branches.push_back(unit(y, n + "_double3x3b", m.out_double, 3, stride));
    if (m.reduction) {
      branches.push_back(
          b_.max_pool(x, n + "_pool_3x3_s2", {.kernel = 3, .stride = 2, .ceil_mode = true}));
    } else {
      y = m.max_pool ? b_.max_pool(x, n + "_pool", {.kernel = 3, .stride = 1, .padding = 1})
                     : b_.avg_pool(x, n + "_pool", {.kernel = 3, .stride = 1, .padding = 1});
      branches.push_back(unit(y, n + "_pool_proj", m.pool_proj, 1, 1));
    }
    y = b_.concat(branches, n + "_concat");
    if (c_.squeeze_excitation)
      y = b_.squeeze_excitation(y, n + "_se", 16, n + "_1x1_down", n + "_1x1_up");
    return y;
  }

  NetBuilder& b_;
  const InceptionConfig& c_;
};

}  // namespace

ValueId build_bn_inception(NetBuilder& builder, ValueId input, const InceptionConfig& config,
                           int64_t num_classes) {
  const int64_t h = builder.shape(input)[2], w = builder.shape(input)[3];
  CONVNET_CHECK(bn_inception_takes_size(h) && bn_inception_takes_size(w),
                "BN-Inception cannot take ", h, "x", w,
                " images: its reduction modules need even maps (224, or a multiple of 32 from 64, "
                "works)");
  return InceptionBuilder(builder, config).build(input, num_classes);
}

bool bn_inception_takes_size(int64_t size) {
  int64_t side = window_output_size(size, 7, 2, 3);  // conv1
  for (int pool = 0; pool < 2; ++pool) side = window_output_size(side, 3, 2, 0, true);
  for (int reduction = 0; reduction < 2; ++reduction) {
    if (side < 3 || side % 2 != 0) return false;  // the pool needs 3 pixels; branches equal
    side = window_output_size(side, 3, 2, 0, true);
  }
  return side >= 1;
}

}  // namespace convnet
