// Opening and writing HDF5 files the way every convnet file is handled:
// read-only opens that say what is wrong with a path, and writes that become
// visible only when complete (weights, checkpoints, datasets).
#pragma once

#include <string>

#include "core/hdf5_handle.h"

namespace convnet {

// Opens `path` read-only, with HDF5's own error printing off. Throws naming
// the path: "<path>: <kind> does not exist or is not readable", "not an HDF5
// file (or truncated)", or that it cannot be opened.
Hdf5Id open_hdf5_read_only(const std::string& path, const char* kind = "file");

// An HDF5 file written under PATH.tmp-<pid> and renamed over PATH by
// commit() after a flush and fsync (core/durable_file.h); the destructor
// removes an uncommitted temporary file, so a failed or killed writer leaves
// no file that looks complete and an existing file at PATH as it was.
class TemporaryHdf5File {
 public:
  // `access`: file access properties (e.g. library version bounds).
  explicit TemporaryHdf5File(const std::string& path, hid_t access = H5P_DEFAULT);
  ~TemporaryHdf5File();
  TemporaryHdf5File(const TemporaryHdf5File&) = delete;
  TemporaryHdf5File& operator=(const TemporaryHdf5File&) = delete;

  hid_t id() const { return file_.get(); }
  const std::string& temp_path() const { return temp_; }
  // Closes every object first: callers reset their dataset handles before.
  void commit();

 private:
  std::string path_, temp_;
  Hdf5Id file_;
  bool committed_ = false;
};

}  // namespace convnet
