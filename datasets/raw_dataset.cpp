#include "datasets/raw_dataset.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>

#include "core/error.h"
#include "core/hdf5_attributes.h"

namespace convnet {

RawDatasetWriter::RawDatasetWriter(const std::string& path, const RawDatasetInfo& info)
    : path_(path), temp_(path + ".tmp-" + std::to_string(getpid())), info_(info) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  CONVNET_CHECK(info.count > 0 && info.height > 0 && info.width > 0 && info.channels > 0, path,
                ": bad dataset shape (", info.count, ", ", info.height, ", ", info.width, ", ",
                info.channels, ")");
  CONVNET_CHECK(
      info.num_classes > 0 && static_cast<int64_t>(info.class_names.size()) == info.num_classes,
      path, ": ", info.num_classes, " classes but ", info.class_names.size(), " names");
  file_ = Hdf5Id(H5Fcreate(temp_.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose,
                 ("creating " + temp_ + " (is the directory writable?)").c_str());
  const hsize_t dims[4] = {hsize_t(info.count), hsize_t(info.height), hsize_t(info.width),
                           hsize_t(info.channels)};
  const hsize_t chunk[4] = {hsize_t(std::min<int64_t>(info.count, 256)), dims[1], dims[2], dims[3]};
  Hdf5Id props(H5Pcreate(H5P_DATASET_CREATE), H5Pclose, "creating dataset properties");
  H5Pset_chunk(props.get(), 4, chunk);
  if (info.compress) H5Pset_deflate(props.get(), 4);
  Hdf5Id space(H5Screate_simple(4, dims, nullptr), H5Sclose, "creating a dataspace");
  images_ = Hdf5Id(H5Dcreate2(file_.get(), "images", H5T_STD_U8LE, space.get(), H5P_DEFAULT,
                              props.get(), H5P_DEFAULT),
                   H5Dclose, ("creating /images in " + temp_).c_str());
  const hsize_t n = info.count;
  Hdf5Id label_space(H5Screate_simple(1, &n, nullptr), H5Sclose, "creating a dataspace");
  labels_ = Hdf5Id(H5Dcreate2(file_.get(), "labels", H5T_STD_I64LE, label_space.get(), H5P_DEFAULT,
                              H5P_DEFAULT, H5P_DEFAULT),
                   H5Dclose, ("creating /labels in " + temp_).c_str());
  sum_.assign(info.channels, 0.0);
  sum_sq_.assign(info.channels, 0.0);
}

RawDatasetWriter::~RawDatasetWriter() {
  if (finished_) return;
  images_.reset();
  labels_.reset();
  file_.reset();
  std::remove(temp_.c_str());
}

void RawDatasetWriter::append(const uint8_t* images, const int64_t* labels, int64_t n) {
  CONVNET_CHECK(!finished_, path_, ": append after finish");
  CONVNET_CHECK(n >= 0 && written_ + n <= info_.count, path_, ": ", written_ + n,
                " images appended, the dataset was declared with ", info_.count);
  if (n == 0) return;
  for (int64_t i = 0; i < n; ++i)
    CONVNET_CHECK(labels[i] >= 0 && labels[i] < info_.num_classes, path_, ": label ", labels[i],
                  " of image ", written_ + i, " is outside [0, ", info_.num_classes, ")");
  const int64_t pixels = n * info_.height * info_.width;
  const int64_t c = info_.channels;
  for (int64_t p = 0; p < pixels; ++p)
    for (int64_t k = 0; k < c; ++k) {
      const double v = images[p * c + k] / 255.0;
      sum_[k] += v;
      sum_sq_[k] += v * v;
    }
  const hsize_t start[4] = {hsize_t(written_), 0, 0, 0};
  const hsize_t count[4] = {hsize_t(n), hsize_t(info_.height), hsize_t(info_.width), hsize_t(c)};
  Hdf5Id file_space(H5Dget_space(images_.get()), H5Sclose, "selecting images");
  H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start, nullptr, count, nullptr);
  Hdf5Id memory_space(H5Screate_simple(4, count, nullptr), H5Sclose, "selecting images");
  CONVNET_CHECK(H5Dwrite(images_.get(), H5T_NATIVE_UINT8, memory_space.get(), file_space.get(),
                         H5P_DEFAULT, images) >= 0,
                "writing images to ", temp_, " (disk full?)");
  Hdf5Id label_file_space(H5Dget_space(labels_.get()), H5Sclose, "selecting labels");
  H5Sselect_hyperslab(label_file_space.get(), H5S_SELECT_SET, start, nullptr, count, nullptr);
  Hdf5Id label_memory_space(H5Screate_simple(1, count, nullptr), H5Sclose, "selecting labels");
  CONVNET_CHECK(H5Dwrite(labels_.get(), H5T_NATIVE_INT64, label_memory_space.get(),
                         label_file_space.get(), H5P_DEFAULT, labels) >= 0,
                "writing labels to ", temp_, " (disk full?)");
  written_ += n;
}

void RawDatasetWriter::finish() {
  CONVNET_CHECK(written_ == info_.count, path_, ": ", written_, " images written, ", info_.count,
                " declared");
  const double values = static_cast<double>(info_.count * info_.height * info_.width);
  std::vector<double> mean(info_.channels), std(info_.channels);
  for (int64_t k = 0; k < info_.channels; ++k) {
    mean[k] = sum_[k] / values;
    std[k] = std::sqrt(std::max(0.0, sum_sq_[k] / values - mean[k] * mean[k]));
  }
  const hid_t root = file_.get();
  write_string_attribute(root, "layout", "raw");
  write_int_attribute(root, "format_version", kDatasetFormatVersion);
  write_int_attribute(root, "num_classes", info_.num_classes);
  write_string_array_attribute(root, "class_names", info_.class_names);
  write_double_array_attribute(root, "mean", mean);
  write_double_array_attribute(root, "std", std);
  write_string_attribute(root, "source", info_.source);
  CONVNET_CHECK(H5Fflush(root, H5F_SCOPE_GLOBAL) >= 0, "flushing ", temp_, " (disk full?)");
  images_.reset();
  labels_.reset();
  file_.reset();
  CONVNET_CHECK(std::rename(temp_.c_str(), path_.c_str()) == 0, "cannot rename ", temp_, " to ",
                path_);
  finished_ = true;
}

namespace {
std::vector<double> read_double_array(hid_t location, const std::string& path, const char* name) {
  CONVNET_CHECK(H5Aexists(location, name) > 0, path, ": missing attribute '", name, "'");
  Hdf5Id attr(H5Aopen(location, name, H5P_DEFAULT), H5Aclose, name);
  Hdf5Id space(H5Aget_space(attr.get()), H5Sclose, name);
  const hssize_t n = H5Sget_simple_extent_npoints(space.get());
  std::vector<double> values(std::max<hssize_t>(n, 0));
  CONVNET_CHECK(H5Aread(attr.get(), H5T_NATIVE_DOUBLE, values.data()) >= 0, path,
                ": reading attribute ", name);
  return values;
}
}  // namespace

RawDataset::RawDataset(const std::string& path) : path_(path) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  CONVNET_CHECK(access(path.c_str(), R_OK) == 0, path, ": file does not exist or is not readable");
  CONVNET_CHECK(H5Fis_hdf5(path.c_str()) > 0, path, ": not an HDF5 file (or truncated)");
  file_ = Hdf5Id(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose,
                 ("opening " + path).c_str());
  const std::string layout = read_string_attribute(file_.get(), path, "layout");
  CONVNET_CHECK(layout == "raw", path, ": layout '", layout, "' is not raw");
  const int64_t version = read_int_attribute(file_.get(), path, "format_version");
  CONVNET_CHECK(version >= 1 && version <= kDatasetFormatVersion, path,
                ": unsupported format_version ", version);
  info_.num_classes = read_int_attribute(file_.get(), path, "num_classes");
  info_.source = read_string_attribute(file_.get(), path, "source");
  info_.class_names = read_string_array_attribute(file_.get(), path, "class_names");
  CONVNET_CHECK(static_cast<int64_t>(info_.class_names.size()) == info_.num_classes, path, ": ",
                info_.class_names.size(), " class names for ", info_.num_classes, " classes");
  mean_ = read_double_array(file_.get(), path, "mean");
  std_ = read_double_array(file_.get(), path, "std");
  CONVNET_CHECK(H5Lexists(file_.get(), "images", H5P_DEFAULT) > 0 &&
                    H5Lexists(file_.get(), "labels", H5P_DEFAULT) > 0,
                path, ": missing /images or /labels");
  images_ = Hdf5Id(H5Dopen2(file_.get(), "images", H5P_DEFAULT), H5Dclose, "opening /images");
  labels_ = Hdf5Id(H5Dopen2(file_.get(), "labels", H5P_DEFAULT), H5Dclose, "opening /labels");
  Hdf5Id space(H5Dget_space(images_.get()), H5Sclose, "reading /images shape");
  CONVNET_CHECK(H5Sget_simple_extent_ndims(space.get()) == 4, path,
                ": /images must be (N, H, W, C)");
  hsize_t dims[4];
  H5Sget_simple_extent_dims(space.get(), dims, nullptr);
  info_.count = dims[0];
  info_.height = dims[1];
  info_.width = dims[2];
  info_.channels = dims[3];
  CONVNET_CHECK(static_cast<int64_t>(mean_.size()) == info_.channels &&
                    static_cast<int64_t>(std_.size()) == info_.channels,
                path, ": mean/std do not have one value per channel");
}

void RawDataset::read_images(int64_t begin, int64_t n, uint8_t* out) const {
  CONVNET_CHECK(begin >= 0 && n >= 0 && begin + n <= info_.count, path_, ": images [", begin, ", ",
                begin + n, ") of ", info_.count);
  const hsize_t start[4] = {hsize_t(begin), 0, 0, 0};
  const hsize_t count[4] = {hsize_t(n), hsize_t(info_.height), hsize_t(info_.width),
                            hsize_t(info_.channels)};
  Hdf5Id file_space(H5Dget_space(images_.get()), H5Sclose, "selecting images");
  H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start, nullptr, count, nullptr);
  Hdf5Id memory_space(H5Screate_simple(4, count, nullptr), H5Sclose, "selecting images");
  CONVNET_CHECK(H5Dread(images_.get(), H5T_NATIVE_UINT8, memory_space.get(), file_space.get(),
                        H5P_DEFAULT, out) >= 0,
                path_, ": reading images [", begin, ", ", begin + n, ") failed (corrupt file?)");
}

std::vector<int64_t> RawDataset::read_labels() const {
  std::vector<int64_t> labels(info_.count);
  CONVNET_CHECK(
      H5Dread(labels_.get(), H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, labels.data()) >= 0,
      path_, ": reading labels failed (corrupt file?)");
  return labels;
}

}  // namespace convnet
