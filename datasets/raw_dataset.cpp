#include "datasets/raw_dataset.h"

#include <algorithm>

#include "core/error.h"
#include "core/hdf5_attributes.h"

namespace convnet {
namespace {
const DatasetInfo& checked(const std::string& path, const DatasetInfo& info) {
  CONVNET_CHECK(info.layout == DatasetLayout::raw, path,
                ": RawDatasetWriter writes the raw layout");
  CONVNET_CHECK(info.count >= 0 && info.height > 0 && info.width > 0 && info.channels > 0, path,
                ": bad dataset shape (", info.count, ", ", info.height, ", ", info.width, ", ",
                info.channels, ")");
  CONVNET_CHECK(
      info.num_classes > 0 && static_cast<int64_t>(info.class_names.size()) == info.num_classes,
      path, ": ", info.num_classes, " classes but ", info.class_names.size(), " names");
  check_class_names(info.class_names);
  return info;
}
}  // namespace

RawDatasetWriter::RawDatasetWriter(const std::string& path, const DatasetInfo& info)
    : path_(path), info_(checked(path, info)), file_(path), stats_(info.channels) {
  const hsize_t n = info.count > 0 ? info.count : (1 << 30), h = info.height, w = info.width,
                c = info.channels;
  const hsize_t per_chunk = std::clamp<hsize_t>((1 << 20) / (h * w * c), 1, n);
  // Extendible along N: a converter that skips corrupt files learns the
  // count only at the end.
  images_ =
      create_dataset(file_.id(), "images", H5T_STD_U8LE, {0, h, w, c}, {H5S_UNLIMITED, h, w, c},
                     {per_chunk, h, w, c}, info.compress, file_.temp_path());
  labels_ = create_dataset(file_.id(), "labels", H5T_STD_I64LE, {0}, {H5S_UNLIMITED}, {4096}, false,
                           file_.temp_path());
}

void RawDatasetWriter::append(const uint8_t* images, const int64_t* labels, int64_t n) {
  CONVNET_CHECK(n >= 0 && (info_.count == 0 || written_ + n <= info_.count), path_, ": ",
                written_ + n, " images appended, the dataset was declared with ", info_.count);
  if (n == 0) return;
  for (int64_t i = 0; i < n; ++i)
    CONVNET_CHECK(labels[i] >= 0 && labels[i] < info_.num_classes, path_, ": label ", labels[i],
                  " of image ", written_ + i, " is outside [0, ", info_.num_classes, ")");
  stats_.add(images, n * info_.height * info_.width);
  const hsize_t grown[4] = {hsize_t(written_ + n), hsize_t(info_.height), hsize_t(info_.width),
                            hsize_t(info_.channels)};
  CONVNET_CHECK(
      H5Dset_extent(images_.get(), grown) >= 0 && H5Dset_extent(labels_.get(), grown) >= 0,
      "growing /images in ", file_.temp_path());
  write_rows(images_.get(), H5T_NATIVE_UINT8, written_, n, images,
             "images to " + file_.temp_path());
  write_rows(labels_.get(), H5T_NATIVE_INT64, written_, n, labels,
             "labels to " + file_.temp_path());
  written_ += n;
}

void RawDatasetWriter::finish() {
  CONVNET_CHECK(written_ > 0 && (info_.count == 0 || written_ == info_.count), path_, ": ",
                written_, " images written, ", info_.count, " declared");
  info_.count = written_;
  write_dataset_attributes(file_.id(), info_, stats_);
  write_int_attribute(file_.id(), "height", info_.height);
  write_int_attribute(file_.id(), "width", info_.width);
  images_.reset();
  labels_.reset();
  file_.commit();
}

}  // namespace convnet
