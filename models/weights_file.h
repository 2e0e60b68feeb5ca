// The weights file: a model's parameters and buffers in HDF5, named and shaped
// exactly like the torchvision state_dict (docs/formats.md):
//
//   /                      attributes: model (string), num_classes (int64), in_channels (int64),
//                                      format_version (int64)
//   /model/<state_dict key>  float32 dataset of the parameter's shape, or an int64
//                            scalar dataset for num_batches_tracked
//
// Written to PATH.tmp-<pid>, flushed and renamed over PATH, so an interrupted
// write never leaves a file that looks complete. tools/torchvision_weights.py
// converts between this file and a torchvision state_dict.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/hdf5_handle.h"
#include "models/param_store.h"

namespace convnet {

struct WeightsMetadata {
  std::string model;
  int64_t num_classes = 0;
  int64_t in_channels = 0;
  int64_t format_version = 0;
  // What training fed the model (optional attributes; empty/0 when absent, as
  // in a file converted from torchvision): per-channel input normalization in
  // 0..1 units, and the input height = width.
  std::vector<double> mean{}, std{};
  int64_t image_size = 0;
};

constexpr int64_t kWeightsFormatVersion = 1;

// Writes every entry of the (finalized) store; arrays are chunked with
// HDF5 Fletcher32 checksums (scalars are compact, covered by the file
// format's metadata checksums), so damage is detected when read. write_extra,
// when given, adds objects to the open file before it is flushed, fsync'ed and
// renamed (the checkpoint extends the file this way). On failure the
// temporary file is removed and an existing file at `path` is untouched.
void save_weights(const std::string& path, const WeightsMetadata& metadata, const ParamStore& store,
                  const std::function<void(hid_t)>& write_extra = {});

// A float32 or int64 dataset with the same checksums, for write_extra.
Hdf5Id create_checksummed_dataset(hid_t location, const std::string& name, hid_t file_type,
                                  const Shape& shape, const std::string& file_name);

// Reads the root attributes; throws naming the file when it is not a weights file.
WeightsMetadata read_weights_metadata(const std::string& path);

// Loads every entry of the store from the file, except those `skip` names
// (left as they are; the file must still hold them). Throws convnet::Error
// naming the file and the first key that is missing, extra, or of another
// shape (with both shapes), or a model name other than `expected_model`
// (when not empty).
void load_weights(const std::string& path, ParamStore& store,
                  const std::string& expected_model = "",
                  const std::function<bool(const std::string&)>& skip = {});

// One float32 key of a weights file, with its shape (the stem of a model
// adapted to other input channels).
std::vector<float> read_weights_tensor(const std::string& path, const std::string& key,
                                       Shape* shape);

}  // namespace convnet
