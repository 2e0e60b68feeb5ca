// What every convnet dataset file shares (docs/formats.md): the root
// attributes, per-channel statistics, and the write-to-temporary-then-rename
// discipline that keeps a killed conversion from leaving a file that looks
// complete.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/hdf5_file.h"

namespace convnet {

constexpr int64_t kDatasetFormatVersion = 1;

enum class DatasetLayout { raw, encoded };
const char* layout_name(DatasetLayout layout);

struct DatasetInfo {
  DatasetLayout layout = DatasetLayout::raw;
  int64_t count = 0;              // N
  int64_t height = 0, width = 0;  // raw: every image's size; encoded: 0 (sizes vary)
  int64_t channels = 0;           // 1 (gray) or 3 (RGB) for encoded
  int64_t num_classes = 0;
  std::vector<std::string> class_names;  // num_classes names
  std::string source;                    // where the data came from
  bool compress = false;                 // deflate level 4 on the image data
};

// Running per-channel mean and standard deviation of pixels in 0..1 units
// (torchvision's Normalize convention), over all pixels of all images.
class ChannelStats {
 public:
  explicit ChannelStats(int64_t channels) : sum_(channels, 0.0), sum_sq_(channels, 0.0) {}
  void add(const uint8_t* pixels, int64_t num_pixels);  // (num_pixels, channels) interleaved
  std::vector<double> mean() const;
  std::vector<double> std() const;

 private:
  std::vector<double> sum_, sum_sq_;
  double pixels_ = 0;
};

// Class names that say which class a label means: throws unless every name
// is non-empty and distinct (the writers check before converting anything).
void check_class_names(const std::vector<std::string>& names);

// Root attributes: layout, format_version, num_classes, class_names, mean,
// std, source, channels (+ height/width for raw).
void write_dataset_attributes(hid_t root, const DatasetInfo& info, const ChannelStats& stats);

// Creates a dataset of `type` and `dims`, chunked by `chunk`, deflated when
// `compress`; errors name `what` in `file`.
Hdf5Id create_dataset(hid_t file, const char* name, hid_t type, const std::vector<hsize_t>& dims,
                      const std::vector<hsize_t>& max_dims, const std::vector<hsize_t>& chunk,
                      bool compress, const std::string& file_name);

// Writes rows [start, start + n) along dimension 0 of a 1-D or N-D dataset.
void write_rows(hid_t dataset, hid_t memory_type, int64_t start, int64_t n, const void* data,
                const std::string& what);

}  // namespace convnet
