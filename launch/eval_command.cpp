// convnet eval / convnet predict: a weights or checkpoint file on a dataset,
// sharded exactly over the ranks of an mpirun job (every sample once).
#include <unistd.h>

#include <boost/program_options.hpp>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <optional>

#include "comm/device_selection.h"
#include "core/durable_file.h"
#include "core/error.h"
#include "core/hdf5_handle.h"
#include "datasets/dataset.h"
#include "datasets/dataset_file.h"
#include "launch/collective_command.h"
#include "launch/commands.h"
#include "launch/option_table.h"
#include "launch/progress_line.h"
#include "models/weights_file.h"
#include "models/zoo.h"
#include "trainer/evaluator.h"

namespace convnet {
namespace {

struct EvalSetup {
  std::string checkpoint, data;
  Backend device = Backend::cpu;
  int64_t batch_size = 64, resize = 0, crop = 0;
  int threads = 0, loader_threads = 2;
  bool allow_size_change = false;
  bool per_class = false;  // eval: per-class top-1 and the confusion matrix
};

void add_eval_options(boost::program_options::options_description& options, EvalSetup& s) {
  namespace po = boost::program_options;
  options.add_options()("help,h", "show this help")(
      "checkpoint", po::value(&s.checkpoint)->required(),
      "weights file (convnet train's model.h5, tools/torchvision_weights.py) or checkpoint")(
      "data", po::value(&s.data)->required(), "dataset: HDF5 file, comma list or glob")(
      "batch-size", po::value(&s.batch_size)->default_value(64), "images per rank and batch")(
      "resize", po::value(&s.resize)->default_value(0),
      "resize the shorter side to this before a center crop (0: crop x 256/224 when --crop is "
      "given)")("crop", po::value(&s.crop)->default_value(0),
                "center crop size (0: the model's training size)")(
      "device", po::value(&s.device)->default_value(s.device),
      "cpu, or cuda (the GPU of each rank's local rank)")(
      "threads", po::value(&s.threads)->default_value(0), "compute threads per rank (0: auto)")(
      "loader-threads", po::value(&s.loader_threads)->default_value(2), "loader threads per rank")(
      "allow-size-change", po::bool_switch(&s.allow_size_change),
      "evaluate raw images of another size than the model was trained on, as they are");
}

// Raw images of another size than the model's training size would be
// evaluated as they are (no crop): refused unless --allow-size-change.
void check_image_size(const EvalSetup& s, const WeightsMetadata& meta, const DatasetInfo& info) {
  if (s.allow_size_change || s.resize > 0 || s.crop > 0 || meta.image_size <= 0 ||
      info.layout != DatasetLayout::raw)
    return;
  CONVNET_CHECK(info.height == meta.image_size && info.width == meta.image_size, s.data, " holds ",
                info.height, "x", info.width, " images but ", s.checkpoint, " was trained on ",
                meta.image_size, "x", meta.image_size, ": pass --crop ", meta.image_size,
                " to resize and center-crop to the training size, or --allow-size-change to "
                "evaluate them as they are");
}

// Loads the model and runs it over this rank's shard.
struct Evaluation {
  EvalTotals totals;
  std::vector<float> logits;    // (count, K) of this rank, in dataset order
  std::vector<int64_t> labels;  // (count)
  int64_t begin = 0, classes = 0, total = 0;
  std::vector<std::string> class_names;  // the dataset's
};

// Whether run_evaluation keeps every logit (predict) or only the totals (eval).
enum class Logits { discard, keep };

// Sizes beyond any image convnet takes overflow the resampler's arithmetic.
void check_eval_options(const EvalSetup& s) {
  constexpr int64_t kMaxSide = 16384;
  CONVNET_CHECK(s.crop >= 0 && s.crop <= kMaxSide, "--crop must lie in [0, ", kMaxSide, "], got ",
                s.crop);
  CONVNET_CHECK(s.resize >= 0 && s.resize <= kMaxSide, "--resize must lie in [0, ", kMaxSide,
                "], got ", s.resize);
}

// A model whose finite weights still give inf or NaN logits (weights near
// float's limit) has no meaningful evaluation: an error, not "loss": nan.
void require_finite_outputs(const EvalTotals& totals, const std::string& checkpoint) {
  CONVNET_CHECK(std::isfinite(totals.loss()), checkpoint,
                ": the model's outputs are not finite (NaN or inf logits; its weights are finite "
                "but too large): nothing to evaluate");
}

Evaluation run_evaluation(const EvalSetup& s, Communicator& communicator, Logits logits_kept) {
  check_eval_options(s);
  const WeightsMetadata meta = read_weights_metadata(s.checkpoint);
  auto dataset = std::make_shared<Dataset>(s.data);
  CONVNET_CHECK(dataset->info().channels == meta.in_channels, s.data, " has ",
                dataset->info().channels, "-channel images, ", s.checkpoint, " expects ",
                meta.in_channels);
  CONVNET_CHECK(dataset->info().num_classes <= meta.num_classes, s.data, " has ",
                dataset->info().num_classes, " classes, ", s.checkpoint, " only ",
                meta.num_classes);
  check_image_size(s, meta, dataset->info());
  LoaderOptions options;
  options.train = false;
  options.augment.train = false;
  options.batch_size = s.batch_size;
  options.world = communicator.size();
  options.rank = communicator.rank();
  options.threads = s.loader_threads;
  // Channels-last models (ResNeXt on the CPU) read channels-last input.
  const ModelSpec spec{
      .name = meta.model, .num_classes = meta.num_classes, .in_channels = meta.in_channels};
  options.augment.channels_last = model_input_layout(s.device, spec) == Layout::nhwc;
  // The training normalization when the file records it, else the dataset's.
  options.augment.mean = meta.mean;
  options.augment.std = meta.std;
  if (s.resize > 0 || s.crop > 0) {
    options.augment.recipe = Recipe::imagenet;
    options.augment.size = s.crop > 0 ? s.crop : (meta.image_size > 0 ? meta.image_size : 224);
    options.augment.resize = s.resize;
    CONVNET_CHECK(s.resize == 0 || s.resize >= options.augment.size, "--resize ", s.resize,
                  " is smaller than the center crop ", options.augment.size,
                  s.crop > 0 ? " (--crop)" : " (the model's training size; --crop sets it)",
                  ": the crop must fit in the resized image");
  } else if (dataset->info().layout == DatasetLayout::encoded) {
    options.augment.size = meta.image_size;
  }
  Loader loader(dataset, options);
  const int threads = s.threads > 0 ? s.threads : cores_per_local_rank(communicator);
  Context context(context_options_for_rank(s.device, threads, Precision::fp32,
                                           resolve_layout(std::nullopt, s.device, Precision::fp32),
                                           communicator));
  ParamStore store;
  ModelNets nets(context, spec, store, meta.in_channels, loader.height(), loader.width());
  nets.get(s.batch_size);  // finalizes the store
  CpuAllocator host_memory;
  ParamStore host_store;  // read on the host, copied to the model's device
  host_store.mirror(store, host_memory);
  load_weights(s.checkpoint, host_store, meta.model);
  copy_values(store, host_store);
  Evaluation result;
  result.classes = meta.num_classes;
  result.total = dataset->size();
  result.class_names = dataset->info().class_names;
  bool first = true;
  // Rank 0's progress, scaled to the whole dataset (the ranks' shards are equal but for one
  // sample).
  std::optional<ProgressLine> progress;
  if (communicator.rank() == 0) progress.emplace(result.total);
  int64_t done = 0;
  result.totals = evaluate(nets, loader, [&](const Batch& batch, const Tensor& logits) {
    if (first) result.begin = batch.indices.front();
    first = false;
    done += batch.count;
    if (progress) progress->update(std::min(result.total - 1, done * communicator.size()));
    if (logits_kept == Logits::keep) {
      result.logits.insert(result.logits.end(), logits.data<float>(),
                           logits.data<float>() + logits.numel());
      result.labels.insert(result.labels.end(), batch.labels.begin(), batch.labels.end());
    }
  });
  if (first) result.begin = 0;
  if (progress) progress->update(result.total);
  return result;
}

}  // namespace

int eval_command(const std::vector<std::string>& args) {
  EvalSetup setup;
  boost::program_options::options_description options(
      "convnet eval [OPTIONS]: top-1, top-5 and loss of a model on a dataset (one JSON line)");
  add_eval_options(options, setup);
  options.add_options()("per-class", boost::program_options::bool_switch(&setup.per_class),
                        "also per-class top-1 and counts with the dataset's class names, and the "
                        "confusion matrix (rows: true class; columns: predicted)");
  boost::program_options::variables_map vm;
  if (!parse_command_line(args, options, &vm)) return 0;
  return run_collective("eval", [&](Communicator& communicator) {
    Evaluation result = run_evaluation(setup, communicator, Logits::discard);
    result.totals.reduce(communicator);
    require_finite_outputs(result.totals, setup.checkpoint);
    if (communicator.rank() != 0) return 0;
    JsonLine line;
    line.add("top1", result.totals.top1())
        .add("top5", result.totals.top5())
        .add("loss", result.totals.loss())
        .add("count", int64_t(result.totals.count));
    if (setup.per_class) add_per_class(line, result.totals, result.class_names, true);
    std::printf("%s\n", line.str().c_str());
    return 0;
  });
}

int predict_command(const std::vector<std::string>& args) {
  EvalSetup setup;
  std::string output;
  boost::program_options::options_description options(
      "convnet predict [OPTIONS]: logits of a model for every sample, in dataset order");
  add_eval_options(options, setup);
  options.add_options()("output", boost::program_options::value(&output)->required(),
                        "HDF5 file to write: /logits float32 (N, K), /labels int64 (N)");
  boost::program_options::variables_map vm;
  if (!parse_command_line(args, options, &vm)) return 0;
  return run_collective("predict", [&](Communicator& communicator) {
    std::vector<std::string> inputs = expand_dataset_paths(setup.data);
    inputs.push_back(setup.checkpoint);
    check_output_file(output, inputs);
    if (communicator.rank() == 0) remove_dead_temporaries(output);
    Evaluation result = run_evaluation(setup, communicator, Logits::keep);
    for (float v : result.logits)
      CONVNET_CHECK(std::isfinite(v), setup.checkpoint,
                    ": the model's outputs are not finite (NaN or inf logits; its weights are "
                    "finite but too large): nothing to predict");
    // Ranks write their rows in turn into rank 0's temporary file; rank 0
    // renames it when all are in.
    int64_t pid = getpid();
    communicator.broadcast(pid, 0);
    const std::string temp = output + ".tmp-" + std::to_string(pid);
    const int64_t rows = static_cast<int64_t>(result.logits.size()) / result.classes;
    const std::vector<int64_t>& labels = result.labels;
    for (int r = 0; r < communicator.size(); ++r) {
      if (r == communicator.rank()) {
        H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
        Hdf5Id file;
        Hdf5Id logits, label_set;
        if (r == 0) {
          file = Hdf5Id(H5Fcreate(temp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose,
                        ("creating " + temp).c_str());
          const hsize_t n = result.total, k = result.classes;
          logits =
              create_dataset(file.get(), "logits", H5T_IEEE_F32LE, {n, k}, {}, {}, false, temp);
          label_set = create_dataset(file.get(), "labels", H5T_STD_I64LE, {n}, {}, {}, false, temp);
        } else {
          file = Hdf5Id(H5Fopen(temp.c_str(), H5F_ACC_RDWR, H5P_DEFAULT), H5Fclose,
                        ("opening " + temp).c_str());
          logits = Hdf5Id(H5Dopen2(file.get(), "logits", H5P_DEFAULT), H5Dclose, "/logits");
          label_set = Hdf5Id(H5Dopen2(file.get(), "labels", H5P_DEFAULT), H5Dclose, "/labels");
        }
        if (rows > 0) {
          write_rows(logits.get(), H5T_NATIVE_FLOAT, result.begin, rows, result.logits.data(),
                     "/logits to " + temp);
          write_rows(label_set.get(), H5T_NATIVE_INT64, result.begin, rows, labels.data(),
                     "/labels to " + temp);
        }
        CONVNET_CHECK(H5Fflush(file.get(), H5F_SCOPE_GLOBAL) >= 0, "flushing ", temp);
      }
      communicator.barrier();
    }
    if (communicator.rank() == 0) {
      fsync_and_rename(temp, output);
      std::printf("%s\n", JsonLine()
                              .add("output", output)
                              .add("count", result.total)
                              .add("classes", result.classes)
                              .str()
                              .c_str());
    }
    return 0;
  });
}

}  // namespace convnet
