// Parity with PyTorch: the same weights and input give the same logits,
// running statistics and gradients in convnet as in the PyTorch definition of
// the model (torchvision's, or tests/models/reference_models.py), and
// tools/torchvision_weights.py converts weights both ways.
//
// The oracle, tests/models/torch_reference.py, runs under /usr/bin/python3
// in float64 on float32 weights and inputs; its docstring explains how the
// weights are chosen so that float32 can be held to a tight bound at all.
// The cases skip with a message when torch, torchvision or h5py cannot be
// imported. CONVNET_PARITY_VERBOSE=1 keeps the reference files and prints,
// per parameter, convnet's deviation next to PyTorch's own float32 deviation.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "core/hdf5_handle.h"
#include "core/onednn.h"
#include "models/weights_file.h"
#include "models/zoo.h"

namespace convnet {
namespace {

const std::string kPython = "/usr/bin/python3";
const std::string kSourceDir = CONVNET_SOURCE_DIR;
const char* const kSkipMessage =
    "PyTorch parity needs /usr/bin/python3 with torch, torchvision and h5py (Debian: "
    "python3-torch, python3-torchvision, python3-h5py); 'import torch, torchvision, h5py' failed";

bool torch_available() {
  static const bool available =
      std::system((kPython + " -c 'import torch, torchvision, h5py' >/dev/null 2>&1").c_str()) == 0;
  return available;
}

bool verbose() { return std::getenv("CONVNET_PARITY_VERBOSE") != nullptr; }

// Runs a shell command and returns its exit status; its output goes to the test log.
int run(const std::string& command) {
  const int status = std::system(command.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// A file in the test's temporary directory, removed when the test ends.
class TempFile {
 public:
  explicit TempFile(const std::string& name)
      : path_(::testing::TempDir() + "/" + std::to_string(getpid()) + "_" + name) {}
  ~TempFile() {
    if (verbose())
      std::printf("kept %s\n", path_.c_str());
    else
      std::remove(path_.c_str());
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// ---- reading the reference file ---------------------------------------------

class H5File {
 public:
  explicit H5File(const std::string& path)
      : path_(path),
        file_(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose,
              ("opening " + path).c_str()) {}

  // Any numeric dataset, converted to double, in row-major order.
  std::vector<double> read(const std::string& name, Shape* shape = nullptr) const {
    CONVNET_CHECK(H5Lexists(file_.get(), name.substr(0, name.find('/')).c_str(), H5P_DEFAULT) > 0 &&
                      H5Lexists(file_.get(), name.c_str(), H5P_DEFAULT) > 0,
                  path_, ": missing dataset ", name);
    Hdf5Id dataset(H5Dopen2(file_.get(), name.c_str(), H5P_DEFAULT), H5Dclose, name.c_str());
    Hdf5Id space(H5Dget_space(dataset.get()), H5Sclose, name.c_str());
    const int rank = H5Sget_simple_extent_ndims(space.get());
    std::vector<hsize_t> dims(static_cast<std::size_t>(std::max(rank, 0)));
    H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
    const Shape s(std::vector<int64_t>(dims.begin(), dims.end()));
    std::vector<double> values(static_cast<std::size_t>(s.numel()));
    CONVNET_CHECK(H5Dread(dataset.get(), H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                          values.data()) >= 0,
                  path_, ": reading ", name);
    if (shape != nullptr) *shape = s;
    return values;
  }

 private:
  std::string path_;
  Hdf5Id file_;
};

// Copies a reference dataset into a convnet tensor of the same shape.
void load_into(const H5File& file, const std::string& name, const Tensor& tensor) {
  Shape shape;
  const std::vector<double> values = file.read(name, &shape);
  ASSERT_EQ(shape, tensor.shape()) << name;
  std::vector<float> row_major(values.begin(), values.end());
  tensor.copy_from(Tensor::wrap(row_major.data(), shape));  // into the tensor's layout
}

// ---- comparison ---------------------------------------------------------------

// The deviation of `actual` from `expected` relative to the tensor's scale:
// max |a - b| / max |b|. Elementwise relative error would be meaningless for
// the many entries near zero (gradients of nearly dead units, logits that
// cross zero); the tensor's largest magnitude is the scale float32 rounding
// error is proportional to.
struct Deviation {
  double relative = 0;
  int64_t index = 0;  // of the worst element
  double actual = 0, expected = 0, scale = 0;
};

Deviation deviation(const std::vector<float>& actual, const std::vector<double>& expected) {
  Deviation d;
  double worst = -1;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    d.scale = std::max(d.scale, std::abs(expected[i]));
    const double diff = std::abs(actual[i] - expected[i]);
    if (diff > worst) {
      worst = diff;
      d.index = static_cast<int64_t>(i);
      d.actual = actual[i];
      d.expected = expected[i];
    }
  }
  d.relative = worst / std::max(d.scale, 1e-30);
  return d;
}

std::string describe(const std::string& what, const Deviation& d) {
  std::ostringstream s;
  s << what << ": max|convnet - torch| / max|torch| = " << d.relative << " (element " << d.index
    << ": " << d.actual << " vs " << d.expected << ", scale " << d.scale << ")";
  return s.str();
}

// ---- the cases ------------------------------------------------------------------

struct ParityCase {
  const char* model;
  int64_t image_size;  // small, to keep the suite fast; large enough for every pooling stage
  Mode mode;
  // The CPU's blocked layout, or nhwc (channels-last, as bf16 runs on AMX);
  // unset: the block this CPU prefers (Context's default).
  std::optional<Layout> block = std::nullopt;
};

std::string case_name(const ParityCase& c) {
  return std::string(c.model) + (c.mode == Mode::training ? "_train" : "_eval") +
         (c.block ? "_" + to_string(*c.block) : "");
}

void PrintTo(const ParityCase& c, std::ostream* out) {
  *out << c.model << " " << c.image_size << "x" << c.image_size
       << (c.mode == Mode::training ? " train" : " eval")
       << (c.block ? " " + to_string(*c.block) : "");
}

// ImageNet models at 64x64: the last ResNet stage and DenseNet-121's last
// block are 2x2, so train-mode BN still sees 8 values per channel at batch 2
// (at 32x32 DenseNet-121's last block would be 1x1: 2 values, ill-posed).
std::vector<ParityCase> parity_cases() {
  const std::pair<const char*, int64_t> models[] = {
      {"resnet18", 64},
      {"resnet50", 64},
      {"densenet121", 64},
      {"resnet20", 32},
      {"preact_resnet164", 32},
      {"densenet_bc_100_k12", 32},
      {"se_resnet50", 64},
      // ResNeXt and SE-ResNeXt run channels-last on the CPU (their groups of
      // 4 channels are not whole blocks); the CIFAR wide ResNet.
      {"resnext50_32x4d", 64},
      {"se_resnext50_32x4d", 64},
      {"wrn_40_4", 32},
  };
  std::vector<ParityCase> cases;
  for (const auto& [model, size] : models)
    for (Mode mode : {Mode::training, Mode::inference}) cases.push_back({model, size, mode});
  // Branches joined by concatenation, ceil-mode max pooling, SE with biased
  // convolutions (the Caffe prototxt's). Trained at 128x128, where the last
  // modules' maps are 4x4: at 64x64 (2x2) train-mode BN of this deep
  // non-residual net at batch 2 is ill-conditioned (PyTorch's own float32
  // gradients are 2e-3 from float64; at 128x128 both are below 1e-4).
  // Evaluated at 64x64: at 128x128 its ~10^5 max-pool windows nearly always
  // hold a near-tie that float32 and float64 may break differently.
  // Blocked on the CPU, concatenations included: both blocks.
  cases.push_back({"se_bn_inception", 128, Mode::training});
  cases.push_back({"se_bn_inception", 64, Mode::inference});
  for (Layout block : {Layout::nchw8c, Layout::nchw16c})
    cases.push_back({"se_bn_inception", 128, Mode::training, block});
  // Both blocked layouts on every CPU, whichever it prefers (training: the
  // gradients are where the kernels' sums differ).
  for (const auto& [model, size] : {models[1], models[2], models[5], models[6]})
    for (Layout block : {Layout::nchw8c, Layout::nchw16c})
      cases.push_back({model, size, Mode::training, block});
  // Channels-last models (option A shortcuts, the SE gate and the
  // memory-efficient dense block included).
  for (const auto& [model, size] : {models[1], models[2], models[3], models[5], models[6]})
    cases.push_back({model, size, Mode::training, Layout::nhwc});
  return cases;
}

constexpr int64_t kBatch = 2;
constexpr int64_t kClasses = 10;  // fewer than 1000 keeps the files small; fc is still tested

class TorchParity : public ::testing::TestWithParam<ParityCase> {};

TEST_P(TorchParity, MatchesPyTorch) {
  if (!torch_available()) GTEST_SKIP() << kSkipMessage;
  const ParityCase& c = GetParam();
  if (c.block == cpu_preferred_blocked_layout())
    GTEST_SKIP() << "the case without a block runs " << to_string(*c.block)
                 << " on this CPU already";
  const bool training = c.mode == Mode::training;
  const TempFile file(std::string("parity_") + c.model + (training ? "_train" : "_eval") + ".h5");
  std::ostringstream command;
  command << kPython << " " << kSourceDir << "/tests/models/torch_reference.py " << c.model << " "
          << file.path() << " --mode " << (training ? "train" : "eval") << " --batch " << kBatch
          << " --size " << c.image_size << " --num-classes " << kClasses << " --seed 1"
          << (verbose() ? " --float32-baseline" : "");
  ASSERT_EQ(run(command.str()), 0) << command.str();

  const bool channels_last = c.block == Layout::nhwc;
  Context context(ContextOptions{.blocked_layout = channels_last ? std::nullopt : c.block});
  ParamStore store;
  const ModelSpec spec{.name = c.model,
                       .num_classes = kClasses,
                       .compute_input_grad = true,
                       .channels_last = channels_last};
  auto net = build_model(context, spec, store, Shape{kBatch, 3, c.image_size, c.image_size});
  load_weights(file.path(), store, c.model);
  const H5File reference(file.path());

  // Forward. The reference has no rounding error of its own, so this is
  // convnet's float32 error alone: ~1e-7 per operation, measured at most
  // ~1e-5 here (DenseNet-121; PyTorch's own float32 forward is the same).
  // A wrong layer, name or wiring is off by O(1e-2) or more even in a branch
  // scaled by 0.1.
  load_into(reference, "input", net->input());
  net->forward(c.mode);
  if (training) net->update_running_statistics(1);  // one step of one micro-batch
  const Deviation logits = deviation(net->output().to_vector(), reference.read("logits"));
  EXPECT_LT(logits.relative, 1e-4) << describe("logits", logits);

  // Running statistics: updated by a training step of one forward (momentum
  // 0.1, unbiased variance), untouched by an inference one; float32 rounding of batch
  // means and variances is ~1e-6 relative.
  for (std::size_t i = 0; i < store.entries().size(); ++i) {
    const ParamEntry& e = store.entries()[i];
    const int id = static_cast<int>(i);
    const std::string key = (training ? "running_after/" : "model/") + e.name;
    if (e.kind == EntryKind::buffer) {
      const Deviation d = deviation(store.buffer(id).to_vector(), reference.read(key));
      EXPECT_LT(d.relative, 1e-4) << describe(e.name, d);
    } else if (e.kind == EntryKind::counter) {
      EXPECT_EQ(static_cast<double>(store.counter(id)), reference.read(key)[0]) << e.name;
    }
  }

  // Backward differentiates the forward that ran: in eval mode BatchNorm's
  // statistics are constants, as in PyTorch's eval mode.
  load_into(reference, "dlogits", net->output_grad());
  store.zero_grads();
  net->backward();

  // Gradients: measured worst 3e-4 (DenseNet-121's norm0.weight, a sum with
  // 10x cancellation; PyTorch's float32 shows 2e-4 there), typically 1e-5.
  // 1e-3 leaves margin for other CPUs' rounding.
  const Deviation dx = deviation(net->input_grad().to_vector(), reference.read("grad_input"));
  EXPECT_LT(dx.relative, 1e-3) << describe("input gradient", dx);
  std::vector<std::pair<double, std::string>> worst;
  for (std::size_t i = 0; i < store.entries().size(); ++i) {
    const ParamEntry& e = store.entries()[i];
    if (e.kind != EntryKind::parameter) continue;
    const std::vector<double> expected = reference.read("grads/" + e.name);
    const Deviation d = deviation(store.grad(static_cast<int>(i)).to_vector(), expected);
    EXPECT_LT(d.relative, 1e-3) << describe("gradient of " + e.name, d);
    worst.emplace_back(d.relative, e.name);
    if (verbose()) {
      const std::vector<double> f32 = reference.read("float32/grads/" + e.name);
      const Deviation t = deviation(std::vector<float>(f32.begin(), f32.end()), expected);
      std::printf("  %s: convnet %.3e, PyTorch float32 %.3e (scale %.3e)\n", e.name.c_str(),
                  d.relative, t.relative, d.scale);
    }
  }
  std::sort(worst.rbegin(), worst.rend());
  std::printf("%s: logits %.2e, input gradient %.2e, worst parameter gradients", c.model,
              logits.relative, dx.relative);
  for (std::size_t i = 0; i < std::min<std::size_t>(3, worst.size()); ++i)
    std::printf(" %s %.2e", worst[i].second.c_str(), worst[i].first);
  std::printf("\n");
}

INSTANTIATE_TEST_SUITE_P(Models, TorchParity, ::testing::ValuesIn(parity_cases()),
                         [](const ::testing::TestParamInfo<ParityCase>& info) {
                           return case_name(info.param);
                         });

// ---- reference definitions ------------------------------------------------------

// Every model of the zoo has exactly the state_dict of its PyTorch definition:
// the same keys, in the same order, with the same shapes.
TEST(ReferenceModels, StateDictsEqualConvnetEntries) {
  if (!torch_available()) GTEST_SKIP() << kSkipMessage;
  const TempFile listing("reference_keys.txt");
  ASSERT_EQ(run(kPython + " " + kSourceDir + "/tests/models/reference_models.py --keys " +
                listing.path()),
            0);
  std::map<std::string, std::vector<std::string>> reference;  // model -> "key extent..."
  std::ifstream in(listing.path());
  for (std::string line; std::getline(in, line);) {
    const std::size_t space = line.find(' ');
    reference[line.substr(0, space)].push_back(line.substr(space + 1));
  }
  Context context;
  for (const ModelInfo& info : model_zoo()) {
    ParamStore store;
    const int64_t size = std::min<int64_t>(info.default_image_size, 64);
    build_model(context, {.name = info.name, .num_classes = 10}, store, Shape{1, 3, size, size});
    std::vector<std::string> entries;
    for (const ParamEntry& e : store.entries()) {
      std::string line = e.name;
      for (int64_t d : e.shape.dims()) line += " " + std::to_string(d);
      entries.push_back(line);
    }
    const std::vector<std::string>& expected = reference[info.name];
    const auto [mine, theirs] =
        std::mismatch(entries.begin(), entries.end(), expected.begin(), expected.end());
    EXPECT_TRUE(mine == entries.end() && theirs == expected.end())
        << info.name << ": entry " << (mine - entries.begin()) << " is '"
        << (mine == entries.end() ? "(end)" : *mine) << "' in convnet, '"
        << (theirs == expected.end() ? "(end)" : *theirs) << "' in PyTorch";
  }
}

// ---- tools/torchvision_weights.py ---------------------------------------------

std::string tool(const std::string& arguments) {
  return kPython + " " + kSourceDir + "/tools/torchvision_weights.py " + arguments;
}

// PyTorch's resnet20 (init) loads into convnet; convnet's resnet18 goes to a
// torchvision state_dict (from-h5) and back (to-h5, which checks every key and
// shape against torchvision's own resnet18) bit for bit.
TEST(TorchvisionWeights, ConvertsBothWays) {
  if (!torch_available()) GTEST_SKIP() << kSkipMessage;
  Context context;
  const TempFile init_file("tool_init.h5"), saved("tool_saved.h5"), pth("tool.pth"),
      back("tool_back.h5"), unused("tool_unused.h5");

  ASSERT_EQ(run(tool("init --model resnet20 --seed 3 --output " + init_file.path())), 0);
  ParamStore cifar;
  build_model(context, {.name = "resnet20"}, cifar, Shape{1, 3, 32, 32});
  load_weights(init_file.path(), cifar, "resnet20");
  const WeightsMetadata m = read_weights_metadata(init_file.path());
  EXPECT_EQ(m.num_classes, 10);
  EXPECT_EQ(m.in_channels, 3);
  EXPECT_EQ(m.format_version, kWeightsFormatVersion);

  ParamStore original;
  build_model(context, {.name = "resnet18", .num_classes = 10}, original, Shape{1, 3, 64, 64});
  initialize_parameters(original, 5);
  const int counter = original.find("layer2.1.bn2.num_batches_tracked");
  original.counter(counter) = 42;
  original.flat_buffers().data<float>()[7] = 0.25f;
  save_weights(saved.path(), {.model = "resnet18", .num_classes = 10, .in_channels = 3}, original);
  ASSERT_EQ(run(tool("from-h5 --input " + saved.path() + " --output " + pth.path())), 0);
  ASSERT_EQ(run(tool("to-h5 --state-dict " + pth.path() +
                     " --model resnet18 --num-classes 10 --in-channels 3 --output " + back.path())),
            0);
  ParamStore restored;
  build_model(context, {.name = "resnet18", .num_classes = 10}, restored, Shape{1, 3, 64, 64});
  load_weights(back.path(), restored, "resnet18");
  EXPECT_EQ(restored.flat_params().to_vector(), original.flat_params().to_vector());
  EXPECT_EQ(restored.flat_buffers().to_vector(), original.flat_buffers().to_vector());
  EXPECT_EQ(restored.counters(), original.counters());

  // Errors: keys of another model, a missing file, an unknown model name.
  EXPECT_NE(run(tool("to-h5 --state-dict " + pth.path() + " --model resnet34 --num-classes 10 " +
                     "--output " + unused.path() + " 2>/dev/null")),
            0);
  EXPECT_NE(run(tool("from-h5 --input /nonexistent.h5 --output " + unused.path() + " 2>/dev/null")),
            0);
  EXPECT_NE(run(tool("init --model resnet19 --output " + unused.path() + " 2>/dev/null")), 0);
}

}  // namespace
}  // namespace convnet
