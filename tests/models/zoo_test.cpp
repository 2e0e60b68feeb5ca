#include "models/zoo.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <map>
#include <optional>
#include <random>

#include "core/error.h"
#include "layers/sgd.h"
#include "layers/softmax_cross_entropy.h"
#include "models/densenet.h"
#include "models/weights_file.h"

namespace convnet {
namespace {

int64_t count(Context& context, const std::string& name, int64_t classes) {
  ParamStore store;
  const int64_t size = model_info(name).default_image_size;
  build_model(context, {.name = name, .num_classes = classes}, store, Shape{1, 3, size, size});
  return store.num_parameters();
}

// The reference counts of torchvision, timm (se_resnet50) and He et al.'s CIFAR ResNets.
TEST(ModelZoo, ParameterCountsEqualTheReferences) {
  Context context({.num_threads = 1});
  const std::map<std::string, int64_t> imagenet{{"resnet18", 11689512},
                                                {"resnet34", 21797672},
                                                {"resnet50", 25557032},
                                                {"resnet101", 44549160},
                                                {"resnet152", 60192808},
                                                {"densenet121", 7978856},
                                                {"densenet161", 28681000},
                                                {"densenet169", 14149480},
                                                {"densenet201", 20013928},
                                                {"se_resnet50", 28088024},
                                                // torchvision's ResNeXts and wide ResNets;
                                                // SE-ResNeXt as the SENet authors and timm.
                                                {"resnext50_32x4d", 25028904},
                                                {"resnext101_32x8d", 88791336},
                                                {"resnext101_64x4d", 83455272},
                                                {"wide_resnet50_2", 68883240},
                                                {"wide_resnet101_2", 126886696},
                                                {"se_resnext50_32x4d", 27559896},
                                                // SENet authors' prototxt (SE) and without SE
                                                {"bn_inception", 11285224},
                                                {"se_bn_inception", 11931622},
                                                {"se_resnext101_32x4d", 48955416}};
  for (const auto& [name, expected] : imagenet)
    EXPECT_EQ(count(context, name, 1000), expected) << name;
  const std::map<std::string, int64_t> cifar{{"resnet20", 269722},
                                             {"resnet32", 464154},
                                             {"resnet44", 658586},
                                             {"resnet56", 853018},
                                             {"resnet110", 1727962},
                                             {"resnet1202", 19421274},
                                             // Zagoruyko and Komodakis' 36.5M and 8.9M
                                             {"wrn_28_10", 36479194},
                                             {"wrn_40_4", 8949210}};
  for (const auto& [name, expected] : cifar) EXPECT_EQ(count(context, name, 10), expected) << name;
}

TEST(ModelZoo, UnknownModelListsValidNames) {
  try {
    model_info("resnet19");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("unknown model 'resnet19'"), std::string::npos) << m;
    EXPECT_NE(m.find("resnet18"), std::string::npos) << m;
    EXPECT_NE(m.find("densenet_bc_100_k12"), std::string::npos) << m;
  }
}

TEST(ModelZoo, GrayscaleInputAndClassCount) {
  Context context;
  ParamStore store;
  auto net = build_model(context, {.name = "resnet20", .num_classes = 7, .in_channels = 1}, store,
                         Shape{2, 1, 28, 28});
  EXPECT_EQ(net->output().shape(), (Shape{2, 7}));
  EXPECT_EQ(store.entries()[0].shape, (Shape{16, 1, 3, 3}));
  EXPECT_THROW(
      build_model(context, {.name = "resnet20", .in_channels = 1}, store, Shape{2, 3, 28, 28}),
      Error);
}

void fill_random(const Tensor& t, std::mt19937& rng) {
  std::normal_distribution<float> dist(0.0f, 1.0f);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = dist(rng);
}

// max |a - b| / max |b|: the error relative to the tensor's scale.
double relative_error(const Tensor& a, const Tensor& b) {
  const std::vector<float> x = a.to_vector(), y = b.to_vector();
  double diff = 0, scale = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    diff = std::max(diff, std::abs(double(x[i]) - y[i]));
    scale = std::max(scale, std::abs(double(y[i])));
  }
  return diff / std::max(scale, 1e-30);
}

// The smallest image a model takes is stated and enforced when it is built,
// naming the model and the size: DenseNets' unpadded transitions need
// 2^transitions pixels after the stem (densenet121: 29 = the 7x7/2 stem and
// 3x3/2 pooling leave 8, three transitions 1); ResNets pad every stride and
// take any size (PyTorch trains them on 1x1 images too).
TEST(ModelZoo, TooSmallImagesAreRefusedNamingTheModelsMinimum) {
  Context context;
  const std::map<std::string, int64_t> minimum{{"densenet121", 29},
                                               {"densenet_bc_100_k12", 4},
                                               {"densenet40_k12", 4},
                                               {"resnet20", 1},
                                               {"bn_inception", 63}};
  for (const auto& [name, size] : minimum) {
    SCOPED_TRACE(name);
    EXPECT_EQ(model_info(name).min_image_size, size);
    ParamStore store;
    EXPECT_NO_THROW(build_model(context, {.name = name}, store, Shape{2, 3, size, size}));
    if (size == 1) continue;
    ParamStore small;
    try {
      build_model(context, {.name = name}, small, Shape{2, 3, size, size - 1});
      ADD_FAILURE() << "built at " << size << "x" << size - 1;
    } catch (const Error& e) {
      const std::string want = "model " + name + " needs images of at least " +
                               std::to_string(size) + "x" + std::to_string(size);
      EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
    }
  }
}

// --bn-momentum reaches every BatchNorm (the memory-efficient dense block's
// too): one step moves running_mean from 0 and running_var from 1 by
// momentum x (batch statistic - start), so momentum 0.5 moves them 5 times
// as far as PyTorch's 0.1.
TEST(ModelZoo, BnMomentumReachesEveryBatchNorm) {
  for (const char* name : {"resnet20", "densenet_bc_100_k12"}) {
    std::vector<std::map<std::string, std::vector<float>>> runs;
    for (double momentum : {0.1, 0.5}) {
      Context context;
      ParamStore store;
      auto net =
          build_model(context, {.name = name, .bn_momentum = momentum}, store, Shape{2, 3, 8, 8});
      initialize_parameters(store, 1);
      std::vector<float> input(static_cast<std::size_t>(net->input().numel()));
      for (std::size_t i = 0; i < input.size(); ++i) input[i] = float(i % 13) / 7.0f;
      copy_from_host(net->input(), input.data());
      net->forward(Mode::training);
      net->update_running_statistics(1);
      std::map<std::string, std::vector<float>> buffers;
      for (std::size_t i = 0; i < store.entries().size(); ++i)
        if (store.entries()[i].kind == EntryKind::buffer)
          buffers[store.entries()[i].name] = store.buffer(static_cast<int>(i)).to_vector();
      runs.push_back(buffers);
    }
    int64_t checked = 0;
    for (const auto& [key, slow] : runs[0]) {
      const float start = key.find("running_var") != std::string::npos ? 1.0f : 0.0f;
      const std::vector<float>& fast = runs[1].at(key);
      for (std::size_t c = 0; c < slow.size(); ++c, ++checked)
        ASSERT_NEAR(fast[c] - start, 5.0f * (slow[c] - start),
                    1e-4f * std::abs(fast[c] - start) + 1e-6f)
            << name << " " << key << "[" << c << "]";
    }
    EXPECT_GT(checked, 100) << name;
  }
  Context context;
  ParamStore store;
  EXPECT_THROW(
      build_model(context, {.name = "resnet20", .bn_momentum = 0}, store, Shape{1, 3, 8, 8}),
      Error);
}

// BN-Inception's reduction modules concatenate stride-2 convolutions (which
// round down) with ceil-mode max pools (which round up): only sides whose
// maps there are even give equal branches (Caffe's 224 and multiples of 32).
TEST(ModelZoo, BnInceptionRefusesSizesItsBranchesCannotJoin) {
  Context context;
  for (int64_t size : {64, 96, 224}) {
    ParamStore store;
    EXPECT_NO_THROW(build_model(context, {.name = "se_bn_inception", .num_classes = 10}, store,
                                Shape{1, 3, size, size}))
        << size;
  }
  ParamStore store;
  try {
    build_model(context, {.name = "bn_inception"}, store, Shape{1, 3, 80, 224});
    ADD_FAILURE() << "built at 80x224";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("BN-Inception cannot take 80x224 images"),
              std::string::npos)
        << e.what();
  }
}

// Grouped models run channels-last on the CPU, input included (the loaders
// of train and eval ask model_input_layout which layout to deliver).
TEST(ModelZoo, GroupedModelsTakeChannelsLastInputOnTheCpu) {
  Context context;
  for (const char* name : {"resnext50_32x4d", "se_resnext50_32x4d"}) {
    ParamStore store;
    const ModelSpec spec{.name = name, .num_classes = 10};
    EXPECT_EQ(model_input_layout(Backend::cpu, spec), Layout::nhwc) << name;
    auto net = build_model(context, spec, store, Shape{1, 3, 32, 32});
    EXPECT_EQ(net->input().layout(), Layout::nhwc) << name;
  }
  EXPECT_EQ(model_input_layout(Backend::cpu, {.name = "resnet50"}), Layout::nchw);
  EXPECT_EQ(model_input_layout(Backend::cuda, {.name = "resnext50_32x4d"}), Layout::nchw);
}

// An ImageNet ResNet on a small image runs its last stage on 1x1 maps; the
// blocked layout must carry through them (the residual additions need one
// layout), and the result must equal the plain layout's.
TEST(ModelZoo, BlockedResNetOnOneByOneMapsEqualsPlain) {
  Context context(ContextOptions{.num_threads = 2});
  ParamStore blocked_store, plain_store;
  const Shape input{2, 3, 32, 32};
  auto blocked = build_model(context, {.name = "resnet18", .num_classes = 5}, blocked_store, input);
  auto plain = build_model(context, {.name = "resnet18", .num_classes = 5, .blocked_layout = false},
                           plain_store, input);
  initialize_parameters(blocked_store, 3);
  copy_values(plain_store, blocked_store);
  std::mt19937 rng(4);
  fill_random(blocked->input(), rng);
  plain->input().copy_from(blocked->input());
  // Inference mode: training-mode BN over 1x1 maps (2 values per channel)
  // would amplify rounding differences beyond any useful bound.
  blocked->forward(Mode::inference);
  plain->forward(Mode::inference);
  EXPECT_LT(relative_error(blocked->output(), plain->output()), 1e-4);
}

// Both blocked layouts (nchw8c, the AVX2 block; nchw16c, the AVX-512 block)
// compute what the plain layout computes, whichever the CPU prefers: a CIFAR
// ResNet (option A shortcuts pad 8 channels on each side, half a block in
// nchw16c), an SE-ResNet (the gate over blocked channels) and a
// memory-efficient DenseNet-BC (growth 12: new channels start inside blocks).
// A training step's logits, input gradient and parameter gradients; bounds as
// in DenseNet.MemoryEfficientEqualsNaive (the same arithmetic in other
// kernels: f32 rounding, amplified by batch norm over few values).
// One model's training step in a context of its own (declared first, so that
// it outlives the store and the net that hold its memory).
struct ModelRun {
  std::unique_ptr<Context> context;
  ParamStore store;
  std::unique_ptr<Net> net;
};

// A forward and backward step of `name` on fixed random input, blocked in
// `blocked` or plain when it is empty.
std::unique_ptr<ModelRun> run_training_step(const std::string& name,
                                            std::optional<Layout> blocked) {
  auto run = std::make_unique<ModelRun>();
  run->context = std::make_unique<Context>(
      ContextOptions{.num_threads = 2, .blocked_layout = blocked.value_or(Layout::nchw8c)});
  run->net =
      build_model(*run->context,
                  {.name = name, .compute_input_grad = true, .blocked_layout = blocked.has_value()},
                  run->store, Shape{2, 3, 16, 16});
  initialize_parameters(run->store, 7);
  std::mt19937 rng(3);
  fill_random(run->net->input(), rng);
  run->net->forward(Mode::training);
  fill_random(run->net->output_grad(), rng);
  run->store.zero_grads();
  run->net->backward();
  return run;
}

TEST(ModelZoo, BothBlockSizesEqualPlain) {
  for (const std::string name : {"resnet20", "se_resnet20", "densenet_bc_100_k12"}) {
    const auto plain = run_training_step(name, std::nullopt);
    for (Layout layout : {Layout::nchw8c, Layout::nchw16c}) {
      const auto blocked = run_training_step(name, layout);
      EXPECT_EQ(blocked->context->blocked_layout(), layout);
      EXPECT_EQ(blocked->net->layout(1), layout) << "the stem convolution's output";
      const std::string what = name + " " + to_string(layout);
      EXPECT_LT(relative_error(blocked->net->output(), plain->net->output()), 1e-5) << what;
      EXPECT_LT(relative_error(blocked->net->input_grad(), plain->net->input_grad()), 1e-4) << what;
      const ParamStore& store = blocked->store;
      for (std::size_t i = 0; i < store.entries().size(); ++i) {
        if (store.entries()[i].kind != EntryKind::parameter) continue;
        EXPECT_LT(relative_error(store.grad(i), plain->store.grad(i)), 1e-4)
            << what << " " << store.entries()[i].name;
      }
    }
  }
}

// Memory-efficient and naive dense blocks compute the same function: same
// logits and the same gradient for every parameter and for the input.
TEST(DenseNet, MemoryEfficientEqualsNaive) {
  Context context;
  for (const int64_t bn_size : {int64_t{4}, int64_t{0}}) {
    const std::string name = "densenet_bc_100_k12";
    auto run = [&](bool efficient, ParamStore& store, std::vector<float>* running) {
      auto net = build_model(context,
                             {.name = bn_size ? "densenet_bc_100_k12" : "densenet40_k12",
                              .memory_efficient = efficient,
                              .compute_input_grad = true},
                             store, Shape{2, 3, 16, 16});
      initialize_parameters(store, 7);
      std::mt19937 rng(3);
      fill_random(net->input(), rng);
      net->forward(Mode::training);
      net->update_running_statistics(1);
      fill_random(net->output_grad(), rng);
      store.zero_grads();
      net->backward();
      *running = store.flat_buffers().to_vector();
      return net;
    };
    ParamStore naive_store, efficient_store;
    std::vector<float> naive_running, efficient_running;
    auto naive = run(false, naive_store, &naive_running);
    auto efficient = run(true, efficient_store, &efficient_running);
    ASSERT_EQ(naive_store.num_parameters(), efficient_store.num_parameters());
    // Same arithmetic in a different memory layout: the only differences are
    // oneDNN choosing other blockings/orders for the copies' consumers, so
    // float32 rounding (~1e-6 relative) is the bound.
    EXPECT_LT(relative_error(efficient->output(), naive->output()), 1e-5) << name;
    EXPECT_LT(relative_error(efficient->input_grad(), naive->input_grad()), 1e-4);
    for (std::size_t i = 0; i < naive_store.entries().size(); ++i) {
      const ParamEntry& e = naive_store.entries()[i];
      ASSERT_EQ(e.name, efficient_store.entries()[i].name);
      if (e.kind != EntryKind::parameter) continue;
      EXPECT_LT(relative_error(efficient_store.grad(i), naive_store.grad(i)), 1e-4) << e.name;
    }
    for (std::size_t i = 0; i < naive_running.size(); ++i)
      ASSERT_NEAR(efficient_running[i], naive_running[i], 1e-5 * (1 + std::abs(naive_running[i])));
    // The efficient block plans less activation memory.
    EXPECT_LT(efficient->activation_bytes(), naive->activation_bytes());
  }
}

TEST(WeightsFile, RoundTripAndMismatchErrors) {
  Context context;
  const std::string dir = ::testing::TempDir();
  const std::string path = dir + "/zoo_test_weights_" + std::to_string(getpid()) + ".h5";
  ParamStore store;
  build_model(context, {.name = "resnet20"}, store, Shape{1, 3, 32, 32});
  initialize_parameters(store, 11);
  store.counter(store.find("bn1.num_batches_tracked")) = 42;
  save_weights(path, {.model = "resnet20", .num_classes = 10, .in_channels = 3}, store);
  EXPECT_EQ(read_weights_metadata(path).model, "resnet20");

  ParamStore loaded;
  build_model(context, {.name = "resnet20"}, loaded, Shape{1, 3, 32, 32});
  load_weights(path, loaded, "resnet20");
  EXPECT_EQ(loaded.flat_params().to_vector(), store.flat_params().to_vector());
  EXPECT_EQ(loaded.flat_buffers().to_vector(), store.flat_buffers().to_vector());
  EXPECT_EQ(loaded.counter(loaded.find("bn1.num_batches_tracked")), 42);

  ParamStore other;
  build_model(context, {.name = "resnet20", .num_classes = 100}, other, Shape{1, 3, 32, 32});
  try {
    load_weights(path, other);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(
        std::string(e.what()).find("key fc.weight has shape (10, 64) in the file but (100, 64)"),
        std::string::npos)
        << e.what();
  }
  ParamStore deeper;
  build_model(context, {.name = "resnet32"}, deeper, Shape{1, 3, 32, 32});
  EXPECT_THROW(load_weights(path, deeper, "resnet32"), Error);  // another model
  EXPECT_THROW(load_weights(path, deeper), Error);              // missing keys
  EXPECT_THROW(load_weights(dir + "/does_not_exist.h5", loaded), Error);

  // A truncated file (a copy cut in half) is rejected with its name, and the
  // store keeps working.
  const std::string cut = path + ".cut";
  {
    std::FILE* in = std::fopen(path.c_str(), "rb");
    std::FILE* out = std::fopen(cut.c_str(), "wb");
    ASSERT_TRUE(in && out);
    std::fseek(in, 0, SEEK_END);
    const long size = std::ftell(in);
    std::fseek(in, 0, SEEK_SET);
    std::vector<char> bytes(size / 2);
    ASSERT_EQ(std::fread(bytes.data(), 1, bytes.size(), in), bytes.size());
    std::fwrite(bytes.data(), 1, bytes.size(), out);
    std::fclose(in);
    std::fclose(out);
  }
  try {
    load_weights(cut, loaded);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(cut), std::string::npos) << e.what();
  }
  std::remove(cut.c_str());
  std::remove(path.c_str());
}

}  // namespace
}  // namespace convnet

namespace convnet {
namespace {

// The gradient-ready callback promises that the reported prefix of the flat
// gradient buffer is final: a snapshot taken at each call must equal the
// buffer after backward. Covers plain ops, blocked ResNets, SE gates and the
// memory-efficient dense block.
TEST(Net, GradientsReportedReadyAreFinal) {
  // Packed (the CPU's) and 64-float aligned (the GPU's) parameter stores.
  for (const int64_t alignment : {1, 64})
    for (const std::string name : {"resnet20", "se_resnet20", "densenet40_k12", "resnet18"}) {
      Context context;
      ParamStore store;
      store.set_alignment(alignment);
      const int64_t size = name == "resnet18" ? 64 : 16;
      auto net = build_model(context, {.name = name}, store, Shape{2, 3, size, size});
      initialize_parameters(store, 5);
      std::mt19937 rng(1);
      fill_random(net->input(), rng);
      net->forward(Mode::training);
      fill_random(net->output_grad(), rng);
      store.zero_grads();
      std::vector<std::vector<float>> snapshots;
      int64_t last = 0;
      net->backward([&](int64_t ready) {
        EXPECT_GT(ready, last) << name << ": ready counts grow";
        last = ready;
        const float* g = store.flat_grads().data<float>();
        snapshots.emplace_back(g, g + ready);
      });
      EXPECT_EQ(last, store.flat_size()) << name;
      EXPECT_GE(snapshots.size(), 5u) << name << ": readiness is reported op by op";
      const std::vector<float> final_grads = store.flat_grads().to_vector();
      for (const std::vector<float>& snapshot : snapshots)
        ASSERT_TRUE(std::equal(snapshot.begin(), snapshot.end(), final_grads.begin()))
            << name << ": a prefix of " << snapshot.size() << " changed after it was reported";
    }
}

// The GPU's aligned parameter layout (gaps between entries) trains exactly
// like the packed one: same SGD segments semantics (gaps stay zero), same
// gradients, same updates. Checked on the CPU, bit for bit, after three
// steps with momentum and weight decay that skips BN parameters and biases.
TEST(ParamStoreLayout, AlignedStoreTrainsLikePackedStore) {
  Context context(ContextOptions{.num_threads = 2});
  const Shape input{4, 3, 16, 16};
  std::vector<std::vector<float>> results;
  for (const int64_t alignment : {1, 64}) {
    ParamStore store;
    store.set_alignment(alignment);
    auto net = build_model(context, {.name = "se_resnet20"}, store, input);
    ParamStore packed;  // initialized packed, as the GPU's host copy is
    packed.mirror(store, context.allocator());
    initialize_parameters(packed, 9);
    copy_values(store, packed);
    Sgd sgd(context, {.momentum = 0.9, .weight_decay = 1e-2},
            store.decay_segments(DecayScope::weights_only), store.flat_size());
    std::mt19937 rng(2);
    for (int step = 0; step < 3; ++step) {
      fill_random(net->input(), rng);
      net->forward(Mode::training);
      fill_random(net->output_grad(), rng);
      store.zero_grads();
      net->backward();
      sgd.step(store.flat_params(), store.flat_grads(), 0.1);
    }
    copy_values(packed, store);
    results.push_back(packed.flat_params().to_vector());
    const std::vector<float> buffers = packed.flat_buffers().to_vector();
    results.back().insert(results.back().end(), buffers.begin(), buffers.end());
    if (alignment > 1) {  // the gaps are still zero
      std::vector<bool> used(static_cast<std::size_t>(store.flat_size()), false);
      for (const ParamEntry& e : store.entries())
        if (e.kind == EntryKind::parameter)
          std::fill_n(used.begin() + e.offset, e.shape.numel(), true);
      const std::vector<float> flat = store.flat_params().to_vector();
      for (std::size_t i = 0; i < flat.size(); ++i)
        if (!used[i]) {
          ASSERT_EQ(flat[i], 0.0f) << "gap element " << i;
        }
    }
  }
  EXPECT_EQ(results[0], results[1]);
}

}  // namespace
}  // namespace convnet
