// convnet inspect FILE: what an HDF5 file holds, as JSON: a checkpoint's
// metadata (model, epoch, step, metrics, world size, configuration), a weights
// file's model, or a dataset's summary.
#include <hdf5.h>

#include <cstdio>

#include "core/error.h"
#include "core/hdf5_attributes.h"
#include "core/hdf5_handle.h"
#include "datasets/dataset.h"
#include "launch/commands.h"
#include "trainer/checkpoint.h"
#include "trainer/progress.h"

namespace convnet {
namespace {

std::string json_array(const std::vector<double>& values) {
  std::string text = "[";
  for (std::size_t i = 0; i < values.size(); ++i) {
    char number[32];
    std::snprintf(number, sizeof number, "%s%.6g", i ? ", " : "", values[i]);
    text += number;
  }
  return text + "]";
}

}  // namespace

int inspect_command(const std::vector<std::string>& args) {
  if (args.size() != 1 || args[0] == "--help" || args[0] == "-h") {
    std::printf(
        "usage: convnet inspect FILE\n  prints a checkpoint's or weights file's metadata, "
        "or a dataset's summary, as one JSON line\n");
    return args.size() == 1 ? 0 : 2;
  }
  const std::string& path = args[0];
  bool is_dataset = false;
  {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    const WeightsMetadata probe = [&] {
      try {
        return read_weights_metadata(path);
      } catch (const Error&) {
        is_dataset = true;
        return WeightsMetadata{};
      }
    }();
    if (!is_dataset) {
      JsonLine line;
      line.add("file", path)
          .add("model", probe.model)
          .add("num_classes", probe.num_classes)
          .add("in_channels", probe.in_channels)
          .add("image_size", probe.image_size);
      std::string text = line.str();
      text.pop_back();
      if (!probe.mean.empty()) text += ", \"mean\": " + json_array(probe.mean);
      if (!probe.std.empty()) text += ", \"std\": " + json_array(probe.std);
      Hdf5Id file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose, path.c_str());
      if (has_attribute(file.get(), "kind")) {
        const CheckpointState s = read_checkpoint_state(path);
        JsonLine state;
        state.add("kind", std::string("checkpoint"))
            .add("global_step", s.global_step)
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
        text += ", " + state.str().substr(1, state.str().size() - 2);
      } else {
        text += ", \"kind\": \"weights\"";
      }
      std::printf("%s}\n", text.c_str());
      return 0;
    }
  }
  const Dataset dataset(path);  // names the problem when it is neither
  const DatasetInfo& info = dataset.info();
  JsonLine line;
  line.add("file", path)
      .add("kind", std::string("dataset"))
      .add("layout", std::string(layout_name(info.layout)))
      .add("count", info.count)
      .add("height", info.height)
      .add("width", info.width)
      .add("channels", info.channels)
      .add("num_classes", info.num_classes)
      .add("shards", int64_t(dataset.paths().size()))
      .add("source", info.source);
  std::string text = line.str();
  text.pop_back();
  text += ", \"mean\": " + json_array(dataset.mean()) + ", \"std\": " + json_array(dataset.std());
  std::string names = "[";
  for (std::size_t i = 0; i < info.class_names.size(); ++i)
    names += (i ? ", \"" : "\"") + info.class_names[i] + "\"";
  std::printf("%s, \"class_names\": %s]}\n", text.c_str(), names.c_str());
  return 0;
}

}  // namespace convnet
