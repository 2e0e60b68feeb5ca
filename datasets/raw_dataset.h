// Writer of the raw dataset layout (docs/formats.md): fixed-size images.
//
//   /images  uint8 (N, H, W, C), chunked by about 1 MiB of images, optionally deflated
//   /labels  int64 (N)
//   /        attributes of dataset_file.h, layout = "raw"
//
// Streams images in (never holding the dataset), computes mean and std on the
// way, and renames the temporary file over the output only in finish().
// Reading goes through Dataset (dataset.h), which reads both layouts.
#pragma once

#include <cstdint>
#include <string>

#include "datasets/dataset_file.h"

namespace convnet {

class RawDatasetWriter {
 public:
  // info.layout must be raw; info.count images will be appended (0: any
  // positive number, known at finish()).
  RawDatasetWriter(const std::string& path, const DatasetInfo& info);

  // Appends n images (n * H * W * C bytes, HWC order) and their labels;
  // labels must lie in [0, num_classes).
  void append(const uint8_t* images, const int64_t* labels, int64_t n);
  // Checks the count, writes the attributes, renames.
  void finish();
  int64_t written() const { return written_; }

 private:
  std::string path_;
  DatasetInfo info_;
  TemporaryHdf5File file_;
  Hdf5Id images_, labels_;
  ChannelStats stats_;
  int64_t written_ = 0;
};

}  // namespace convnet
