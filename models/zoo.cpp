#include "models/zoo.h"

#include <cmath>
#include <functional>
#include <random>

#include "core/error.h"
#include "models/densenet.h"
#include "models/inception.h"
#include "models/resnet.h"

namespace convnet {
namespace {

// Residual block kind, and the benchmark a model is defined for (its
// default classes and input size).
enum class Block { basic, bottleneck };
enum class Scale { cifar, imagenet };

const std::vector<int64_t> kImageNetWidths{64, 128, 256, 512};
const std::vector<int64_t> kCifarWidths{16, 32, 64};

ResNetConfig imagenet_resnet(std::vector<int> blocks, Block block) {
  return {.blocks = std::move(blocks),
          .widths = kImageNetWidths,
          .bottleneck = block == Block::bottleneck};
}

// He et al. 2015 sec. 4.2: 6n+2 layers, basic blocks, option A shortcuts.
ResNetConfig cifar_resnet(int depth) {
  const int n = (depth - 2) / 6;
  return {.blocks = {n, n, n},
          .widths = kCifarWidths,
          .imagenet_stem = false,
          .stem_channels = 16,
          .pad_shortcut = true};
}

// He et al. 2016: 6n+2 (basic) or 9n+2 (bottleneck) layers, projection shortcuts.
ResNetConfig cifar_preact(int depth, Block block) {
  const bool bottleneck = block == Block::bottleneck;
  const int n = bottleneck ? (depth - 2) / 9 : (depth - 2) / 6;
  return {.blocks = {n, n, n},
          .widths = kCifarWidths,
          .bottleneck = bottleneck,
          .imagenet_stem = false,
          .stem_channels = 16,
          .preact = true};
}

// Pre-activation blocks (He et al. 2016b).
ResNetConfig preactivated(ResNetConfig c) {
  c.preact = true;
  return c;
}

// ResNeXt (Xie et al. 2017) and wide ResNets (Zagoruyko and Komodakis 2016)
// as torchvision builds them: bottlenecks of `groups` x `width_per_group`.
ResNetConfig grouped(ResNetConfig c, int64_t groups, int64_t width_per_group) {
  c.groups = groups;
  c.width_per_group = width_per_group;
  return c;
}

// Zagoruyko and Komodakis 2016 (WRN-d-k on CIFAR, their Table 1 and
// github.com/szagoruyko/wide-residual-networks): 3x3 stem of 16 channels,
// three stages of (d - 4) / 6 pre-activation basic blocks of 16k, 32k and
// 64k channels (1x1 projection shortcut from the pre-activated input where
// the shape changes), final BN-ReLU; no dropout.
ResNetConfig wide_cifar(int depth, int64_t k) {
  const int n = (depth - 4) / 6;
  return {.blocks = {n, n, n},
          .widths = {16 * k, 32 * k, 64 * k},
          .imagenet_stem = false,
          .stem_channels = 16,
          .preact = true};
}

// Squeeze-and-excitation blocks (Hu et al.).
ResNetConfig with_se(ResNetConfig c) {
  c.squeeze_excitation = true;
  return c;
}

// DenseNet-BC for CIFAR: (depth - 4) / 6 bottleneck layers per block, 2k stem channels.
DenseNetConfig cifar_densenet_bc(int depth, int64_t k) {
  const int n = (depth - 4) / 6;
  return {.growth_rate = k, .blocks = {n, n, n}, .init_features = 2 * k, .imagenet_stem = false};
}

struct Entry {
  ModelInfo info;
  std::function<ValueId(NetBuilder&, ValueId, const ModelSpec&, int64_t)> build;
};

// The activation layout of a ResNet-family model: channels-last NHWC when
// asked (ModelSpec::channels_last: the GPU's tensor cores, the CPU's AMX bf16
// kernels), else on the CPU the context's blocked layout (nchw8c or nchw16c,
// the block the CPU's kernels prefer; ModelSpec::blocked_layout), plain NCHW
// otherwise.
// A grouped model (ResNeXt) runs channels-last instead on the CPU, its input
// included: oneDNN 2.6 has JIT kernels for grouped convolutions in nhwc (in
// the blocked layouts only for groups of whole blocks, in plain nchw only
// GEMM-based ones), and a stem convolution from nchw input to nhwc output
// falls to its reference kernel.
Layout activation_layout(const Context& context, const ModelSpec& spec,
                         const ResNetConfig& config) {
  if (spec.channels_last) return Layout::nhwc;
  if (context.backend() == Backend::cpu && spec.blocked_layout)
    return config.groups > 1 ? Layout::nhwc : context.blocked_layout();
  return Layout::nchw;
}

Entry resnet_entry(const std::string& name, const std::string& family, ResNetConfig config,
                   Scale scale) {
  const bool cifar = scale == Scale::cifar;
  return {{name, family, cifar ? 10 : 1000, cifar ? 32 : 224, 1, config.groups > 1},
          [config](NetBuilder& b, ValueId x, const ModelSpec& spec, int64_t classes) {
            ResNetConfig c = config;
            c.stride_in_1x1 = spec.resnet_v1;
            c.drop_path = spec.drop_path;
            b.set_activation_layout(activation_layout(b.context(), spec, c));
            return build_resnet(b, x, c, classes);
          }};
}

// The smallest input side whose last transition still pools a pixel: the
// ImageNet stem (7x7/2 convolution, padding 3; 3x3/2 max pooling, padding 1)
// and one 2x2/2 average pooling per transition, as models/densenet.cpp.
int64_t densenet_min_image_size(const DenseNetConfig& config) {
  for (int64_t size = 1;; ++size) {
    int64_t side = size;
    if (config.imagenet_stem) side = ((side + 6 - 7) / 2 + 1 + 2 - 3) / 2 + 1;
    for (std::size_t t = 0; t + 1 < config.blocks.size(); ++t) side /= 2;
    if (side >= 1) return size;
  }
}

Entry densenet_entry(const std::string& name, DenseNetConfig config, Scale scale) {
  const bool cifar = scale == Scale::cifar;
  return {{name, "densenet", cifar ? 10 : 1000, cifar ? 32 : 224, densenet_min_image_size(config)},
          [config](NetBuilder& b, ValueId x, const ModelSpec& spec, int64_t classes) {
            DenseNetConfig c = config;
            c.memory_efficient = spec.memory_efficient;
            CONVNET_CHECK(spec.drop_path == 0, "--drop-path drops residual blocks; ", spec.name,
                          " has none (DenseNets concatenate)");
            // Memory-efficient DenseNets run blocked on the CPU (channel counts
            // that are not a multiple of the block pad their last block); the
            // naive block's concatenation needs plain NCHW. The ImageNet DenseNets
            // run blocked only in nchw16c on an AVX-512 CPU: there oneDNN's batch
            // norm keeps DenseNet-121's norm0 weight gradient within the parity
            // bound (4.3e-4 from the double-precision reference; plain 2.8e-4),
            // while its AVX2 kernels, in either block, lose more to cancellation
            // in the scale gradient (1.15e-3 in nchw8c, 1.45e-3 in nchw16c: above
            // the bound; tests/models/parity_test.cpp). Blocked, DenseNet-121
            // trains 2.5x faster (bench/README.md).
            const Context& context = b.context();
            const bool blocked_ok =
                !c.imagenet_stem ||
                (context.blocked_layout() == Layout::nchw16c && context.blocked_layout_is_native());
            // Channels-last (bf16 on AMX) they run nhwc on the CPU too.
            const bool cpu = b.context().backend() == Backend::cpu;
            if (cpu && c.memory_efficient && spec.channels_last)
              b.set_activation_layout(Layout::nhwc);
            else if (cpu && c.memory_efficient && blocked_ok && spec.blocked_layout)
              b.set_activation_layout(context.blocked_layout());
            return build_densenet(b, x, c, classes);
          }};
}

// BN-Inception and SE-BN-Inception, ImageNet scale; the smallest side its
// reduction modules take (models/inception.h). On the CPU they run in the
// blocked layout (every branch is a whole number of 8- and 16-channel blocks,
// so the concatenations stay blocked), else plain NCHW.
Entry inception_entry(const std::string& name, const std::string& family, InceptionConfig config) {
  int64_t smallest = 1;
  while (!bn_inception_takes_size(smallest)) ++smallest;
  return {{name, family, 1000, 224, smallest},
          [config](NetBuilder& b, ValueId x, const ModelSpec& spec, int64_t classes) {
            CONVNET_CHECK(spec.drop_path == 0, "--drop-path drops residual blocks; ", spec.name,
                          " has none (Inception modules concatenate)");
            if (b.context().backend() == Backend::cpu && spec.blocked_layout)
              b.set_activation_layout(b.context().blocked_layout());
            return build_bn_inception(b, x, config, classes);
          }};
}

const std::vector<Entry>& entries() {
  static const std::vector<Entry> all = [] {
    std::vector<Entry> e;
    const std::vector<std::pair<int, std::vector<int>>> imagenet{{18, {2, 2, 2, 2}},
                                                                 {34, {3, 4, 6, 3}},
                                                                 {50, {3, 4, 6, 3}},
                                                                 {101, {3, 4, 23, 3}},
                                                                 {152, {3, 8, 36, 3}}};
    for (const auto& [depth, blocks] : imagenet)
      e.push_back(
          resnet_entry("resnet" + std::to_string(depth), "resnet",
                       imagenet_resnet(blocks, depth >= 50 ? Block::bottleneck : Block::basic),
                       Scale::imagenet));
    for (int depth : {20, 32, 44, 56, 110, 1202})
      e.push_back(resnet_entry("resnet" + std::to_string(depth), "resnet", cifar_resnet(depth),
                               Scale::cifar));
    auto preact_imagenet = imagenet;
    preact_imagenet.push_back({200, {3, 24, 36, 3}});
    for (const auto& [depth, blocks] : preact_imagenet)
      e.push_back(resnet_entry(
          "preact_resnet" + std::to_string(depth), "preact_resnet",
          preactivated(imagenet_resnet(blocks, depth >= 50 ? Block::bottleneck : Block::basic)),
          Scale::imagenet));
    e.push_back(resnet_entry("preact_resnet110", "preact_resnet", cifar_preact(110, Block::basic),
                             Scale::cifar));
    e.push_back(resnet_entry("preact_resnet164", "preact_resnet",
                             cifar_preact(164, Block::bottleneck), Scale::cifar));
    e.push_back(resnet_entry("preact_resnet1001", "preact_resnet",
                             cifar_preact(1001, Block::bottleneck), Scale::cifar));
    for (const auto& [depth, blocks] : imagenet)
      if (depth >= 50)
        e.push_back(resnet_entry("se_resnet" + std::to_string(depth), "se_resnet",
                                 with_se(imagenet_resnet(blocks, Block::bottleneck)),
                                 Scale::imagenet));
    for (int depth : {20, 32, 44, 56, 110})
      e.push_back(resnet_entry("se_resnet" + std::to_string(depth), "se_resnet",
                               with_se(cifar_resnet(depth)), Scale::cifar));
    const std::vector<int> blocks50{3, 4, 6, 3}, blocks101{3, 4, 23, 3};
    const auto bottlenecks = [](const std::vector<int>& blocks) {
      return imagenet_resnet(blocks, Block::bottleneck);
    };
    e.push_back(resnet_entry("resnext50_32x4d", "resnext", grouped(bottlenecks(blocks50), 32, 4),
                             Scale::imagenet));
    e.push_back(resnet_entry("resnext101_32x8d", "resnext", grouped(bottlenecks(blocks101), 32, 8),
                             Scale::imagenet));
    e.push_back(resnet_entry("resnext101_64x4d", "resnext", grouped(bottlenecks(blocks101), 64, 4),
                             Scale::imagenet));
    e.push_back(resnet_entry("se_resnext50_32x4d", "se_resnext",
                             with_se(grouped(bottlenecks(blocks50), 32, 4)), Scale::imagenet));
    e.push_back(resnet_entry("se_resnext101_32x4d", "se_resnext",
                             with_se(grouped(bottlenecks(blocks101), 32, 4)), Scale::imagenet));
    e.push_back(resnet_entry("wide_resnet50_2", "wide_resnet",
                             grouped(bottlenecks(blocks50), 1, 128), Scale::imagenet));
    e.push_back(resnet_entry("wide_resnet101_2", "wide_resnet",
                             grouped(bottlenecks(blocks101), 1, 128), Scale::imagenet));
    e.push_back(resnet_entry("wrn_28_10", "wide_resnet", wide_cifar(28, 10), Scale::cifar));
    e.push_back(resnet_entry("wrn_40_4", "wide_resnet", wide_cifar(40, 4), Scale::cifar));
    e.push_back(resnet_entry("se_preact_resnet164", "se_resnet",
                             with_se(cifar_preact(164, Block::bottleneck)), Scale::cifar));
    e.push_back(inception_entry("bn_inception", "inception", {}));
    e.push_back(inception_entry("se_bn_inception", "se_inception", {.squeeze_excitation = true}));
    const std::vector<std::tuple<int, int64_t, int64_t, std::vector<int>>> densenets{
        {121, 32, 64, {6, 12, 24, 16}},
        {161, 48, 96, {6, 12, 36, 24}},
        {169, 32, 64, {6, 12, 32, 32}},
        {201, 32, 64, {6, 12, 48, 32}},
        {264, 32, 64, {6, 12, 64, 48}}};
    for (const auto& [depth, k, init, blocks] : densenets)
      e.push_back(densenet_entry("densenet" + std::to_string(depth),
                                 {.growth_rate = k, .blocks = blocks, .init_features = init},
                                 Scale::imagenet));
    e.push_back(densenet_entry("densenet_bc_100_k12", cifar_densenet_bc(100, 12), Scale::cifar));
    e.push_back(densenet_entry("densenet_bc_250_k24", cifar_densenet_bc(250, 24), Scale::cifar));
    e.push_back(densenet_entry("densenet_bc_190_k40", cifar_densenet_bc(190, 40), Scale::cifar));
    // Huang et al.'s original L=40, k=12: no bottleneck, no compression, 16 stem channels.
    e.push_back(densenet_entry("densenet40_k12",
                               {.growth_rate = 12,
                                .blocks = {12, 12, 12},
                                .init_features = 16,
                                .bn_size = 0,
                                .compression = 1.0,
                                .imagenet_stem = false},
                               Scale::cifar));
    return e;
  }();
  return all;
}

const Entry& find_entry(const std::string& name) {
  for (const Entry& e : entries())
    if (e.info.name == name) return e;
  std::string valid;
  for (const Entry& e : entries()) valid += (valid.empty() ? "" : ", ") + e.info.name;
  throw Error("unknown model '" + name + "'; valid models: " + valid);
}

}  // namespace

const std::vector<ModelInfo>& model_zoo() {
  static const std::vector<ModelInfo> infos = [] {
    std::vector<ModelInfo> v;
    for (const Entry& e : entries()) v.push_back(e.info);
    return v;
  }();
  return infos;
}

const ModelInfo& model_info(const std::string& name) { return find_entry(name).info; }

std::unique_ptr<Net> build_model(Context& context, const ModelSpec& spec, ParamStore& store,
                                 const Shape& input_shape) {
  const Entry& entry = find_entry(spec.name);
  const int64_t classes = spec.num_classes > 0 ? spec.num_classes : entry.info.default_classes;
  CONVNET_CHECK(spec.in_channels > 0, "model ", spec.name, ": in_channels must be > 0");
  CONVNET_CHECK(spec.drop_path >= 0 && spec.drop_path < 1, "--drop-path must lie in [0, 1), got ",
                spec.drop_path);
  CONVNET_CHECK(input_shape.rank() == 4 && input_shape[1] == spec.in_channels, "model ", spec.name,
                " with ", spec.in_channels, " input channels cannot take input shape ",
                input_shape);
  const int64_t min_size = entry.info.min_image_size;
  CONVNET_CHECK(input_shape[2] >= min_size && input_shape[3] >= min_size, "model ", spec.name,
                " needs images of at least ", min_size, "x", min_size,
                " (its poolings would leave no pixel of smaller ones); got ", input_shape[2], "x",
                input_shape[3]);
  if (store.finalized()) store.begin_rebind();
  auto net = std::make_unique<Net>(context, store);
  NetBuilder builder(context, *net, store);
  CONVNET_CHECK(spec.bn_momentum > 0 && spec.bn_momentum <= 1,
                "--bn-momentum must lie in (0, 1], got ", spec.bn_momentum);
  builder.set_bn_momentum(spec.bn_momentum);
  const ValueId logits =
      entry.build(builder, net->add_input(input_shape, model_input_layout(context.backend(), spec)),
                  spec, classes);
  net->set_output(logits);
  net->set_seed(spec.seed);
  net->set_compute_input_grad(spec.compute_input_grad);
  net->plan();
  return net;
}

Layout model_input_layout(Backend backend, const ModelSpec& spec) {
  // Channels-last models take channels-last input (the stem convolution's
  // fast kernels want both sides channels-last); on the GPU DenseNets stay NCHW.
  const ModelInfo& info = find_entry(spec.name).info;
  const bool densenet = info.family == "densenet";
  const bool inception = info.family.find("inception") != std::string::npos;  // plain NCHW
  const bool channels_last =
      spec.channels_last && !inception && (!densenet || backend == Backend::cpu);
  const bool grouped_on_cpu = info.grouped && backend == Backend::cpu && spec.blocked_layout;
  return channels_last || grouped_on_cpu ? Layout::nhwc : Layout::nchw;
}

void initialize_parameters(ParamStore& store, uint64_t seed) {
  if (store.flat_size() > 0 && store.flat_params().device() != Device::cpu) {
    CpuAllocator host_memory;  // outlives host_store's tensors
    ParamStore host_store;     // packed, as the trainer's host copy
    host_store.mirror(store, host_memory);
    initialize_parameters(host_store, seed);
    copy_values(store, host_store);
    return;
  }
  std::mt19937_64 rng(seed);
  const auto& entries = store.entries();
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const ParamEntry& e = entries[i];
    const int id = static_cast<int>(i);
    if (e.kind == EntryKind::counter) {
      store.counter(id) = 0;
      continue;
    }
    const Tensor t = e.kind == EntryKind::buffer ? store.buffer(id) : store.param(id);
    float* p = t.data<float>();
    const int64_t n = t.numel();
    const bool is_bias = e.name.size() > 5 && e.name.compare(e.name.size() - 5, 5, ".bias") == 0;
    if (e.kind == EntryKind::buffer) {
      const bool var = e.name.find("running_var") != std::string::npos;
      std::fill(p, p + n, var ? 1.0f : 0.0f);
    } else if (e.shape.rank() == 4) {
      // Kaiming normal, fan_out mode, ReLU gain: std = sqrt(2 / (C_out * K * K)).
      const double std = std::sqrt(2.0 / (e.shape[0] * e.shape[2] * e.shape[3]));
      std::normal_distribution<float> dist(0.0f, static_cast<float>(std));
      for (int64_t k = 0; k < n; ++k) p[k] = dist(rng);
    } else if (e.shape.rank() == 2) {
      // PyTorch's Linear default: uniform(+-1/sqrt(in_features)).
      const float bound = 1.0f / std::sqrt(static_cast<float>(e.shape[1]));
      std::uniform_real_distribution<float> dist(-bound, bound);
      for (int64_t k = 0; k < n; ++k) p[k] = dist(rng);
    } else if (is_bias && i > 0 && entries[i - 1].kind == EntryKind::parameter &&
               entries[i - 1].shape.rank() >= 2) {
      // Bias of a conv or linear layer: uniform(+-1/sqrt(fan_in)).
      const Shape& w = entries[i - 1].shape;
      const double fan_in = static_cast<double>(w.numel() / w[0]);
      const float bound = static_cast<float>(1.0 / std::sqrt(fan_in));
      std::uniform_real_distribution<float> dist(-bound, bound);
      for (int64_t k = 0; k < n; ++k) p[k] = dist(rng);
    } else {
      // BatchNorm: weight 1, bias 0.
      std::fill(p, p + n, is_bias ? 0.0f : 1.0f);
    }
  }
}

}  // namespace convnet
