#include "datasets/encoded_dataset.h"

#include "core/error.h"
#include "core/hdf5_attributes.h"

namespace convnet {
namespace {
const DatasetInfo& checked(const std::string& path, const DatasetInfo& info) {
  CONVNET_CHECK(info.layout == DatasetLayout::encoded, path,
                ": EncodedDatasetWriter writes the encoded layout");
  CONVNET_CHECK(info.channels == 1 || info.channels == 3, path,
                ": encoded datasets have 1 or 3 channels, not ", info.channels);
  CONVNET_CHECK(
      info.num_classes > 0 && static_cast<int64_t>(info.class_names.size()) == info.num_classes,
      path, ": ", info.num_classes, " classes but ", info.class_names.size(), " names");
  check_class_names(info.class_names);
  return info;
}
}  // namespace

EncodedDatasetWriter::EncodedDatasetWriter(const std::string& path, const DatasetInfo& info)
    : path_(path), info_(checked(path, info)), file_(path), stats_(info.channels) {
  // Already-compressed JPEG/PNG bytes gain nothing from deflate.
  encoded_ = create_dataset(file_.id(), "encoded", H5T_STD_U8LE, {0}, {H5S_UNLIMITED}, {1 << 20},
                            false, file_.temp_path());
}

void EncodedDatasetWriter::append(const std::vector<uint8_t>& bytes, int64_t label,
                                  const Image& decoded) {
  CONVNET_CHECK(label >= 0 && label < info_.num_classes, path_, ": label ", label, " of sample ",
                written(), " is outside [0, ", info_.num_classes, ")");
  CONVNET_CHECK(decoded.channels == info_.channels, path_, ": sample ", written(), " has ",
                decoded.channels, " channels, the dataset ", info_.channels);
  const int64_t start = offsets_.back();
  const hsize_t size = static_cast<hsize_t>(start + bytes.size());
  CONVNET_CHECK(H5Dset_extent(encoded_.get(), &size) >= 0, "growing /encoded in ",
                file_.temp_path());
  if (!bytes.empty())
    write_rows(encoded_.get(), H5T_NATIVE_UINT8, start, static_cast<int64_t>(bytes.size()),
               bytes.data(), "/encoded to " + file_.temp_path());
  stats_.add(decoded.pixels.data(), decoded.height * decoded.width);
  offsets_.push_back(static_cast<int64_t>(size));
  labels_.push_back(label);
}

void EncodedDatasetWriter::finish() {
  CONVNET_CHECK(!labels_.empty(), path_, ": no samples to write");
  const hsize_t n = labels_.size();
  Hdf5Id offsets = create_dataset(file_.id(), "offsets", H5T_STD_I64LE, {n + 1}, {}, {}, false,
                                  file_.temp_path());
  write_rows(offsets.get(), H5T_NATIVE_INT64, 0, n + 1, offsets_.data(),
             "/offsets to " + file_.temp_path());
  Hdf5Id labels =
      create_dataset(file_.id(), "labels", H5T_STD_I64LE, {n}, {}, {}, false, file_.temp_path());
  write_rows(labels.get(), H5T_NATIVE_INT64, 0, n, labels_.data(),
             "/labels to " + file_.temp_path());
  info_.count = static_cast<int64_t>(n);
  write_dataset_attributes(file_.id(), info_, stats_);
  offsets.reset();
  labels.reset();
  encoded_.reset();
  file_.commit();
}

}  // namespace convnet
