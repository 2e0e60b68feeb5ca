// convnet inspect [--quick] FILE: what an HDF5 file holds, as JSON: a
// checkpoint's metadata (model, epoch, step, metrics, world size,
// configuration), a weights file's model, or a dataset's summary. A
// checkpoint or weights file is verified first as --resume and eval would
// load it (every dataset read and checksummed, the model's keys, shapes and
// types, finite values, the momentum, possible training-state fields), and
// a damaged one is an error saying what is wrong; --quick reads the
// attributes only.
#include <cstdio>

#include "core/context.h"
#include "core/error.h"
#include "core/hdf5_attributes.h"
#include "core/hdf5_file.h"
#include "datasets/dataset.h"
#include "launch/commands.h"
#include "layers/sgd.h"
#include "models/zoo.h"
#include "trainer/checkpoint.h"
#include "trainer/progress.h"

namespace convnet {
namespace {

// The weights-file (and checkpoint) fields, or false when `path` is not one
// (no root attribute 'model'). A weights file whose metadata is damaged is
// an error naming the damage, not a dataset.
bool describe_weights(const std::string& path, JsonLine* line) {
  if (!has_attribute(open_hdf5_read_only(path).get(), "model")) return false;
  const WeightsMetadata meta = read_weights_metadata(path);
  line->add("file", path)
      .add("model", meta.model)
      .add("num_classes", meta.num_classes)
      .add("in_channels", meta.in_channels)
      .add("image_size", meta.image_size);
  if (!meta.mean.empty()) line->add("mean", meta.mean);
  if (!meta.std.empty()) line->add("std", meta.std);
  const bool checkpoint = has_attribute(open_hdf5_read_only(path).get(), "kind");
  line->add("kind", std::string(checkpoint ? "checkpoint" : "weights"));
  if (!checkpoint) return true;
  const CheckpointState s = read_checkpoint_state(path);
  line->add("global_step", s.global_step)
      .add("epoch", s.epoch)
      .add("step_in_epoch", s.step_in_epoch)
      .add("samples_seen", s.samples_seen)
      .add("world_size", s.world_size)
      .add("batch_size", s.batch_size)
      .add("accumulate", s.accumulate)
      .add("val_top1", s.val_top1)
      .add("val_loss", s.val_loss)
      .add("best_top1", s.best_top1)
      .add("best_step", s.best_step)
      .add("created", s.created)
      .add("convnet_version", s.convnet_version)
      .add("config", s.config);
  return true;
}

// Loads the file into its model as --resume (checkpoint) or eval (weights)
// would, throwing on the first problem.
void verify_weights(const std::string& path, bool checkpoint) {
  const std::string damage = verify_hdf5_file(path);
  CONVNET_CHECK(damage.empty(), damage);  // names the file and the dataset
  const WeightsMetadata meta = read_weights_metadata(path);
  Context context;
  ParamStore store;
  const int64_t size =
      meta.image_size > 0 ? meta.image_size : model_info(meta.model).default_image_size;
  build_model(
      context,
      {.name = meta.model, .num_classes = meta.num_classes, .in_channels = meta.in_channels}, store,
      Shape{1, meta.in_channels, size, size});
  if (!checkpoint) return load_weights(path, store, meta.model);
  Sgd sgd(context, {}, store.decay_segments(DecayScope::all_parameters), store.flat_size());
  load_checkpoint(path, store, sgd, meta.model);
}

}  // namespace

int inspect_command(const std::vector<std::string>& args) {
  const bool quick = !args.empty() && args[0] == "--quick";
  const std::size_t files = args.size() - (quick ? 1 : 0);
  if (files != 1 || args.back() == "--help" || args.back() == "-h") {
    std::printf(
        "usage: convnet inspect [--quick] FILE\n  prints a checkpoint's or weights file's "
        "metadata, or a dataset's summary, as one JSON line; a checkpoint or weights file is "
        "verified first as --resume and eval load it (--quick: attributes only)\n");
    return files == 1 ? 0 : 2;
  }
  const std::string& path = args.back();
  JsonLine line;
  const bool weights = describe_weights(path, &line);
  if (weights && !quick) {
    verify_weights(path, has_attribute(open_hdf5_read_only(path).get(), "kind"));
    line.add("verified", std::string("yes"));
  }
  if (!weights) {
    const Dataset dataset(path);  // names the problem when it is neither
    const DatasetInfo& info = dataset.info();
    line.add("file", path)
        .add("kind", std::string("dataset"))
        .add("layout", std::string(layout_name(info.layout)))
        .add("count", info.count)
        .add("height", info.height)
        .add("width", info.width)
        .add("channels", info.channels)
        .add("num_classes", info.num_classes)
        .add("shards", int64_t(dataset.paths().size()))
        .add("source", info.source)
        .add("mean", dataset.mean())
        .add("std", dataset.std())
        .add("class_names", info.class_names);
  }
  std::printf("%s\n", line.str().c_str());
  return 0;
}

}  // namespace convnet
