// Read access to a convnet dataset: one HDF5 file or a list of shard files
// read as one (docs/formats.md), in the raw or the encoded layout.
//
// The shards must agree on layout, channels, classes (and image size for
// raw). Sample i of the whole dataset is sample i - begin(s) of shard s, in
// the order the shards are given (a glob expands in sorted order).
//
// Opening validates everything cheap to validate: HDF5 structure, dataset
// types and shapes, /labels length and range, /offsets monotonicity. Errors
// name the file, the dataset and, for a sample, its index.
//
// Thread safety: load()/read_raw()/read_encoded() may be called from several
// threads (Debian's HDF5 is built thread-safe and serializes its calls; the
// decoding that dominates runs in parallel).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "datasets/dataset_file.h"
#include "datasets/image.h"

namespace convnet {

// A sample that cannot be decoded (truncated or corrupt JPEG/PNG); the loader
// may skip these with --skip-corrupt.
class SampleError : public Error {
 public:
  using Error::Error;
};

struct DatasetOptions {
  // Raw data up to this many bytes is read into memory once at open, so
  // random access costs a memcpy instead of an HDF5 call per sample.
  int64_t cache_bytes = int64_t(1) << 30;
};

// "a.h5", "a.h5,b.h5" or "train-*.h5" (globs expand sorted; a glob that
// matches nothing is an error naming it).
std::vector<std::string> expand_dataset_paths(const std::string& spec);

class Dataset {
 public:
  explicit Dataset(const std::string& spec, const DatasetOptions& options = {});
  ~Dataset();
  Dataset(const Dataset&) = delete;
  Dataset& operator=(const Dataset&) = delete;

  // count = total over shards; height/width are 0 for the encoded layout.
  const DatasetInfo& info() const { return info_; }
  int64_t size() const { return info_.count; }
  // Per channel, 0..1 units; the sample-weighted mean over shards.
  const std::vector<double>& mean() const { return mean_; }
  const std::vector<double>& std() const { return std_; }
  const std::vector<int64_t>& labels() const { return labels_; }  // (N)
  const std::vector<std::string>& paths() const { return paths_; }

  // Sample `index` decoded (encoded layout) or as stored (raw layout), HWC.
  // A damaged sample throws Error naming the file, dataset and index.
  Image load(int64_t index) const;
  // Raw layout: H * W * C bytes of sample `index` into out.
  void read_raw(int64_t index, uint8_t* out) const;
  // Encoded layout: the stored file bytes of sample `index`.
  std::vector<uint8_t> read_encoded(int64_t index) const;
  // "FILE sample K" for messages.
  std::string describe(int64_t index) const;

 private:
  struct Shard;
  const Shard& shard_of(int64_t index, int64_t* local) const;

  DatasetInfo info_;
  std::vector<std::string> paths_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::vector<double> mean_, std_;
  std::vector<int64_t> labels_;
};

}  // namespace convnet
