// Writer of the encoded dataset layout (docs/formats.md): variable-size
// JPEG/PNG files stored as they are (or re-encoded by the converter).
//
//   /encoded  uint8 (total bytes)  every file's bytes back to back, chunked by 1 MiB
//   /offsets  int64 (N + 1)        sample i is encoded[offsets[i] : offsets[i + 1]]
//   /labels   int64 (N)
//   /         attributes of dataset_file.h, layout = "encoded"
//
// Samples stream into /encoded; offsets and labels (16 bytes a sample) stay in
// memory until finish() writes them, the attributes, and renames the file.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "datasets/dataset_file.h"
#include "datasets/image.h"

namespace convnet {

class EncodedDatasetWriter {
 public:
  // info.layout must be encoded; info.count is ignored (the count is what
  // gets appended).
  EncodedDatasetWriter(const std::string& path, const DatasetInfo& info);

  // Appends one file's bytes; `decoded` is its decoded image (for mean/std).
  void append(const std::vector<uint8_t>& bytes, int64_t label, const Image& decoded);
  void finish();
  int64_t written() const { return static_cast<int64_t>(labels_.size()); }

 private:
  std::string path_;
  DatasetInfo info_;
  TemporaryHdf5File file_;
  Hdf5Id encoded_;
  ChannelStats stats_;
  std::vector<int64_t> offsets_{0}, labels_;
};

}  // namespace convnet
