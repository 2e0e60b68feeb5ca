// Move-only RAII owner of an HDF5 identifier (file, group, dataset, dataspace,
// datatype, property list or attribute). The identifier is closed with the
// matching H5?close when the owner goes away; a close failure in a destructor
// is logged, never thrown.
#pragma once

#include <hdf5.h>

#include <string>
#include <utility>

#include "core/error.h"

namespace convnet {

class Hdf5Id {
 public:
  using Closer = herr_t (*)(hid_t);

  Hdf5Id() = default;
  // Takes ownership of `id`; throws naming `what` if the HDF5 call that produced it failed (id <
  // 0).
  Hdf5Id(hid_t id, Closer closer, const char* what) : id_(id), closer_(closer) {
    CONVNET_CHECK(id >= 0, "HDF5 failed: ", what);
  }
  // An object of an existing file opened for reading (its link or attribute
  // was found): failing to open it is damage, said so naming the file and
  // the object.
  static Hdf5Id opened(hid_t id, Closer closer, const std::string& path,
                       const std::string& object) {
    CONVNET_CHECK(id >= 0, path, ": damaged file: ", object,
                  " cannot be opened (a metadata checksum mismatch or a corrupt object header)");
    return Hdf5Id(id, closer, "opening");
  }
  ~Hdf5Id() { reset(); }
  Hdf5Id(Hdf5Id&& other) noexcept
      : id_(std::exchange(other.id_, H5I_INVALID_HID)), closer_(other.closer_) {}
  Hdf5Id& operator=(Hdf5Id&& other) noexcept {
    if (this != &other) {
      reset();
      id_ = std::exchange(other.id_, H5I_INVALID_HID);
      closer_ = other.closer_;
    }
    return *this;
  }
  Hdf5Id(const Hdf5Id&) = delete;
  Hdf5Id& operator=(const Hdf5Id&) = delete;

  hid_t get() const { return id_; }
  explicit operator bool() const { return id_ >= 0; }

  // Gives up ownership (the caller closes it).
  hid_t release() { return std::exchange(id_, H5I_INVALID_HID); }

  void reset() {
    if (id_ >= 0 && closer_ != nullptr) {
      const herr_t status = closer_(id_);
      CONVNET_WARN_IF_NOT(status >= 0, "closing an HDF5 identifier failed");
    }
    id_ = H5I_INVALID_HID;
  }

 private:
  hid_t id_ = H5I_INVALID_HID;
  Closer closer_ = nullptr;
};

}  // namespace convnet
