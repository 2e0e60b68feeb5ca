// The raw dataset layout (docs/formats.md): fixed-size images in one HDF5 file.
//
//   /images  uint8 (N, H, W, C), chunked by 256 images, optionally deflate-compressed
//   /labels  int64 (N)
//   /        attributes layout = "raw", format_version, num_classes,
//            class_names (strings), mean and std (per channel, 0..1 units as
//            torchvision's Normalize), source
//
// RawDatasetWriter streams images in (never holding the dataset), computes
// mean and std on the way, writes to PATH.tmp-<pid> and renames it over PATH
// in finish(): a killed conversion never leaves a file that looks complete.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/hdf5_handle.h"

namespace convnet {

constexpr int64_t kDatasetFormatVersion = 1;

struct RawDatasetInfo {
  int64_t count = 0;  // N
  int64_t height = 0, width = 0, channels = 0;
  int64_t num_classes = 0;
  std::vector<std::string> class_names;  // num_classes names
  std::string source;                    // where the data came from
  bool compress = false;                 // deflate level 4 on /images
};

class RawDatasetWriter {
 public:
  RawDatasetWriter(const std::string& path, const RawDatasetInfo& info);
  ~RawDatasetWriter();  // removes the temporary file unless finish() succeeded
  RawDatasetWriter(const RawDatasetWriter&) = delete;
  RawDatasetWriter& operator=(const RawDatasetWriter&) = delete;

  // Appends n images (n * H * W * C bytes, HWC order) and their labels;
  // labels must lie in [0, num_classes).
  void append(const uint8_t* images, const int64_t* labels, int64_t n);
  // Checks that exactly `count` images came, writes mean/std, flushes, renames.
  void finish();
  int64_t written() const { return written_; }

 private:
  std::string path_, temp_;
  RawDatasetInfo info_;
  Hdf5Id file_, images_, labels_;
  int64_t written_ = 0;
  std::vector<double> sum_, sum_sq_;  // per channel, in 0..1 units
  bool finished_ = false;
};

// Read access to a raw dataset file (the loader builds on this).
class RawDataset {
 public:
  explicit RawDataset(const std::string& path);  // throws naming the path and problem
  const RawDatasetInfo& info() const { return info_; }
  const std::vector<double>& mean() const { return mean_; }
  const std::vector<double>& std() const { return std_; }
  // Images [begin, begin + n) into out (n * H * W * C bytes).
  void read_images(int64_t begin, int64_t n, uint8_t* out) const;
  std::vector<int64_t> read_labels() const;

 private:
  std::string path_;
  RawDatasetInfo info_;
  std::vector<double> mean_, std_;
  Hdf5Id file_, images_, labels_;
};

}  // namespace convnet
