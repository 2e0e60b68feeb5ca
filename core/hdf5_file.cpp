#include "core/hdf5_file.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>

#include "core/durable_file.h"
#include "core/error.h"

namespace convnet {

Hdf5Id open_hdf5_read_only(const std::string& path, const char* kind) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  CONVNET_CHECK(access(path.c_str(), R_OK) == 0, path, ": ", kind,
                " does not exist or is not readable");
  // A FIFO would block the reader forever, a device feed it garbage.
  struct stat info;
  CONVNET_CHECK(stat(path.c_str(), &info) == 0 && S_ISREG(info.st_mode), path, ": ", kind,
                " is not a regular file (a directory, FIFO or device)");
  CONVNET_CHECK(H5Fis_hdf5(path.c_str()) > 0, path,
                ": not an HDF5 file (or truncated, or its superblock is damaged)");
  return Hdf5Id(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose,
                (path + ": cannot open (truncated or damaged?)").c_str());
}

TemporaryHdf5File::TemporaryHdf5File(const std::string& path, hid_t access)
    : path_(path), temp_(path + ".tmp-" + std::to_string(getpid())) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  check_output_file(path);
  // HDF5 1.8 object headers and the rest of the metadata carry checksums.
  Hdf5Id checksummed(H5Pcreate(H5P_FILE_ACCESS), H5Pclose, "creating file access properties");
  H5Pset_libver_bounds(checksummed.get(), H5F_LIBVER_V18, H5F_LIBVER_LATEST);
  if (access == H5P_DEFAULT) access = checksummed.get();
  file_ = Hdf5Id(H5Fcreate(temp_.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, access), H5Fclose,
                 ("creating " + temp_ + " (is the directory writable?)").c_str());
}

TemporaryHdf5File::~TemporaryHdf5File() {
  if (committed_) return;
  file_.reset();
  std::remove(temp_.c_str());
}

void TemporaryHdf5File::commit() {
  CONVNET_CHECK(H5Fflush(file_.get(), H5F_SCOPE_GLOBAL) >= 0, "flushing ", temp_, " (disk full?)");
  CONVNET_CHECK(H5Fclose(file_.release()) >= 0, "closing ", temp_, " (disk full?)");
  fsync_and_rename(temp_, path_);
  committed_ = true;
}

}  // namespace convnet
