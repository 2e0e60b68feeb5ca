#include "datasets/dataset_file.h"

#include <cmath>

#include "core/error.h"
#include "core/hdf5_attributes.h"

namespace convnet {

const char* layout_name(DatasetLayout layout) {
  return layout == DatasetLayout::raw ? "raw" : "encoded";
}

void ChannelStats::add(const uint8_t* pixels, int64_t num_pixels) {
  const int64_t c = static_cast<int64_t>(sum_.size());
  // Integer partial sums per image keep the double accumulation short.
  std::vector<uint64_t> sum(c, 0), sum_sq(c, 0);
  for (int64_t p = 0; p < num_pixels; ++p)
    for (int64_t k = 0; k < c; ++k) {
      const uint64_t v = pixels[p * c + k];
      sum[k] += v;
      sum_sq[k] += v * v;
    }
  for (int64_t k = 0; k < c; ++k) {
    sum_[k] += sum[k] / 255.0;
    sum_sq_[k] += sum_sq[k] / (255.0 * 255.0);
  }
  pixels_ += static_cast<double>(num_pixels);
}

std::vector<double> ChannelStats::mean() const {
  std::vector<double> mean(sum_.size());
  for (std::size_t k = 0; k < sum_.size(); ++k) mean[k] = pixels_ > 0 ? sum_[k] / pixels_ : 0.0;
  return mean;
}

std::vector<double> ChannelStats::std() const {
  const std::vector<double> m = mean();
  std::vector<double> std(sum_.size());
  for (std::size_t k = 0; k < sum_.size(); ++k)
    std[k] = pixels_ > 0 ? std::sqrt(std::max(0.0, sum_sq_[k] / pixels_ - m[k] * m[k])) : 0.0;
  return std;
}

void check_class_names(const std::vector<std::string>& names) {
  for (std::size_t k = 0; k < names.size(); ++k) {
    CONVNET_CHECK(!names[k].empty(), "class ", k, " has an empty name");
    for (std::size_t j = 0; j < k; ++j)
      CONVNET_CHECK(names[j] != names[k], "class name '", names[k], "' is given twice (classes ", j,
                    " and ", k, "): labels would be ambiguous");
  }
}

void write_dataset_attributes(hid_t root, const DatasetInfo& info, const ChannelStats& stats) {
  check_class_names(info.class_names);
  write_string_attribute(root, "layout", layout_name(info.layout));
  write_int_attribute(root, "format_version", kDatasetFormatVersion);
  write_int_attribute(root, "num_classes", info.num_classes);
  write_string_array_attribute(root, "class_names", info.class_names);
  write_double_array_attribute(root, "mean", stats.mean());
  write_double_array_attribute(root, "std", stats.std());
  write_string_attribute(root, "source", info.source);
  write_int_attribute(root, "channels", info.channels);
}

Hdf5Id create_dataset(hid_t file, const char* name, hid_t type, const std::vector<hsize_t>& dims,
                      const std::vector<hsize_t>& max_dims, const std::vector<hsize_t>& chunk,
                      bool compress, const std::string& file_name) {
  Hdf5Id props(H5Pcreate(H5P_DATASET_CREATE), H5Pclose, "creating dataset properties");
  if (!chunk.empty()) H5Pset_chunk(props.get(), static_cast<int>(chunk.size()), chunk.data());
  if (compress) H5Pset_deflate(props.get(), 4);
  Hdf5Id space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(),
                                max_dims.empty() ? nullptr : max_dims.data()),
               H5Sclose, "creating a dataspace");
  return Hdf5Id(H5Dcreate2(file, name, type, space.get(), H5P_DEFAULT, props.get(), H5P_DEFAULT),
                H5Dclose, ("creating /" + std::string(name) + " in " + file_name).c_str());
}

void write_rows(hid_t dataset, hid_t memory_type, int64_t start, int64_t n, const void* data,
                const std::string& what) {
  Hdf5Id file_space(H5Dget_space(dataset), H5Sclose, "selecting rows");
  const int rank = H5Sget_simple_extent_ndims(file_space.get());
  std::vector<hsize_t> dims(rank), offset(rank, 0), count(rank);
  H5Sget_simple_extent_dims(file_space.get(), dims.data(), nullptr);
  count = dims;
  offset[0] = static_cast<hsize_t>(start);
  count[0] = static_cast<hsize_t>(n);
  H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, offset.data(), nullptr, count.data(),
                      nullptr);
  Hdf5Id memory_space(H5Screate_simple(rank, count.data(), nullptr), H5Sclose, "selecting rows");
  CONVNET_CHECK(
      H5Dwrite(dataset, memory_type, memory_space.get(), file_space.get(), H5P_DEFAULT, data) >= 0,
      "writing ", what, " (disk full?)");
}

}  // namespace convnet
