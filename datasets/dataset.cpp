#include "datasets/dataset.h"

#include <glob.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>

#include "core/error.h"
#include "core/hdf5_attributes.h"

// Loader threads read through one Dataset at the same time.
#ifndef H5_HAVE_THREADSAFE
#error "convnet's loader needs a thread-safe HDF5 build (Debian's libhdf5-dev is one)"
#endif

namespace convnet {

struct Dataset::Shard {
  std::string path;
  DatasetInfo info;
  std::vector<double> mean, std;
  Hdf5Id file, data;             // data = /images (raw) or /encoded
  std::vector<int64_t> offsets;  // encoded: (count + 1)
  std::vector<uint8_t> cache;    // raw: every image when small enough
  int64_t begin = 0;             // first global index
};

namespace {

// Opens /name and checks it is an integer dataset of `rank` dimensions.
Hdf5Id open_dataset(hid_t file, const std::string& path, const char* name, int rank,
                    H5T_sign_t sign, std::size_t type_size, std::vector<hsize_t>* dims) {
  CONVNET_CHECK(has_link(file, path, name), path, ": missing dataset /", name);
  Hdf5Id dataset = Hdf5Id::opened(H5Dopen2(file, name, H5P_DEFAULT), H5Dclose, path,
                                  std::string("dataset /") + name);
  Hdf5Id type(H5Dget_type(dataset.get()), H5Tclose, "reading a dataset type");
  CONVNET_CHECK(H5Tget_class(type.get()) == H5T_INTEGER && H5Tget_sign(type.get()) == sign &&
                    H5Tget_size(type.get()) == type_size,
                path, ": /", name, " must be ", sign == H5T_SGN_NONE ? "uint" : "int",
                8 * type_size);
  Hdf5Id space(H5Dget_space(dataset.get()), H5Sclose, "reading a dataset shape");
  const int actual = H5Sget_simple_extent_ndims(space.get());
  CONVNET_CHECK(actual == rank, path, ": /", name, " must have ", rank, " dimensions, not ",
                actual);
  dims->resize(rank);
  H5Sget_simple_extent_dims(space.get(), dims->data(), nullptr);
  return dataset;
}

void read_all(hid_t dataset, hid_t type, void* out, const std::string& what) {
  CONVNET_CHECK(H5Dread(dataset, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) >= 0, "reading ", what,
                " failed (truncated or corrupt file?)");
}

// Reads elements [start, start + n) of dimension 0 of `dataset` into out.
void read_rows(hid_t dataset, hid_t type, int64_t start, int64_t n, void* out,
               const std::string& what) {
  Hdf5Id file_space(H5Dget_space(dataset), H5Sclose, "selecting rows");
  const int rank = H5Sget_simple_extent_ndims(file_space.get());
  std::vector<hsize_t> dims(rank), offset(rank, 0);
  H5Sget_simple_extent_dims(file_space.get(), dims.data(), nullptr);
  offset[0] = static_cast<hsize_t>(start);
  dims[0] = static_cast<hsize_t>(n);
  H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, offset.data(), nullptr, dims.data(),
                      nullptr);
  Hdf5Id memory_space(H5Screate_simple(rank, dims.data(), nullptr), H5Sclose, "selecting rows");
  CONVNET_CHECK(H5Dread(dataset, type, memory_space.get(), file_space.get(), H5P_DEFAULT, out) >= 0,
                "reading ", what, " failed (truncated or corrupt file?)");
}

// The array's image dimensions against the attributes convert writes (one
// flipped header byte can make /images 16 million pixels wide), and a bound
// on one image that no real dataset reaches.
void check_image_dims(hid_t root, const std::string& path, const DatasetInfo& info) {
  constexpr int64_t kMaxImageBytes = int64_t{64} << 20;
  const std::pair<const char*, int64_t> dims[] = {
      {"height", info.height}, {"width", info.width}, {"channels", info.channels}};
  for (const auto& [name, value] : dims) {
    if (!has_attribute(root, name)) continue;
    const int64_t recorded = read_int_attribute(root, path, name);
    CONVNET_CHECK(recorded == value, path, ": damaged file: /images has ", name, " ", value,
                  " but the file records ", recorded);
  }
  CONVNET_CHECK(info.height * info.width * info.channels <= kMaxImageBytes, path,
                ": /images holds ", info.height, "x", info.width, "x", info.channels,
                " images, larger than convnet takes (64 MiB each): a damaged file?");
}

}  // namespace

std::vector<std::string> expand_dataset_paths(const std::string& spec) {
  std::vector<std::string> paths;
  std::stringstream in(spec);
  for (std::string item; std::getline(in, item, ',');) {
    if (item.empty()) continue;
    if (item.find_first_of("*?[") == std::string::npos) {
      paths.push_back(item);
      continue;
    }
    glob_t matches;
    const int status = glob(item.c_str(), 0, nullptr, &matches);
    std::vector<std::string> found;
    if (status == 0)
      for (std::size_t i = 0; i < matches.gl_pathc; ++i) found.push_back(matches.gl_pathv[i]);
    globfree(&matches);
    CONVNET_CHECK(!found.empty(), "dataset pattern '", item, "' matches no file");
    std::sort(found.begin(), found.end());
    paths.insert(paths.end(), found.begin(), found.end());
  }
  CONVNET_CHECK(!paths.empty(), "no dataset file given");
  return paths;
}

namespace {

// The per-channel mean and std of pixel values scaled to [0, 1]: finite and
// in [0, 1], else the file is damaged. (A constant channel's std of 0 is a
// fact about the data; the loader refuses to normalize by it.)
void check_normalization(const std::string& path, const std::vector<double>& mean,
                         const std::vector<double>& std) {
  for (std::size_t k = 0; k < mean.size(); ++k) {
    CONVNET_CHECK(std::isfinite(mean[k]) && mean[k] >= 0 && mean[k] <= 1, path,
                  ": damaged normalization: mean of channel ", k, " is ", mean[k],
                  " (pixel values scaled to [0, 1] have a mean in [0, 1])");
    CONVNET_CHECK(std::isfinite(std[k]) && std[k] >= 0 && std[k] <= 1, path,
                  ": damaged normalization: std of channel ", k, " is ", std[k],
                  " (pixel values scaled to [0, 1] have a std in [0, 1])");
  }
}

// The layout attribute, else what the file holds: /images (raw) or /encoded.
DatasetLayout read_layout(hid_t root, const std::string& path) {
  if (has_attribute(root, "layout")) {
    const std::string layout = read_string_attribute(root, path, "layout");
    CONVNET_CHECK(layout == "raw" || layout == "encoded", path, ": unknown layout '", layout, "'");
    return layout == "raw" ? DatasetLayout::raw : DatasetLayout::encoded;
  }
  if (has_link(root, path, "images")) return DatasetLayout::raw;
  CONVNET_CHECK(has_link(root, path, "encoded"), path,
                ": neither /images (raw layout) nor /encoded (encoded layout): not a dataset file");
  return DatasetLayout::encoded;
}

// The optional root attributes: format_version (1), source (""),
// num_classes and class_names (0 and none: from the labels).
void read_optional_attributes(hid_t root, const std::string& path, DatasetInfo& info) {
  if (has_attribute(root, "format_version")) {
    const int64_t version = read_int_attribute(root, path, "format_version");
    CONVNET_CHECK(version >= 1 && version <= kDatasetFormatVersion, path,
                  ": unsupported format_version ", version, " (this build reads 1..",
                  kDatasetFormatVersion, ")");
  }
  if (has_attribute(root, "num_classes")) {
    info.num_classes = read_int_attribute(root, path, "num_classes");
    CONVNET_CHECK(info.num_classes > 0, path, ": num_classes must be positive");
  }
  if (has_attribute(root, "source")) info.source = read_string_attribute(root, path, "source");
  if (has_attribute(root, "class_names")) {
    info.class_names = read_string_array_attribute(root, path, "class_names");
    CONVNET_CHECK(info.num_classes > 0, path, ": class_names without num_classes");
    CONVNET_CHECK(static_cast<int64_t>(info.class_names.size()) == info.num_classes, path, ": ",
                  info.class_names.size(), " class names for ", info.num_classes, " classes");
  }
}

// A file without num_classes: the labels' largest value + 1, with a notice;
// without class_names: "0".."K-1".
void complete_classes(const std::string& path, const std::vector<int64_t>& labels,
                      DatasetInfo& info) {
  if (info.num_classes == 0) {
    int64_t largest = 0;
    for (int64_t label : labels) {
      CONVNET_CHECK(label >= 0, path, ": /labels holds the negative label ", label);
      largest = std::max(largest, label);
    }
    info.num_classes = largest + 1;
    std::fprintf(stderr,
                 "convnet: notice: %s has no num_classes attribute; %ld classes from its labels "
                 "(0..%ld)\n",
                 path.c_str(), long(info.num_classes), long(largest));
  }
  for (int64_t k = static_cast<int64_t>(info.class_names.size()); k < info.num_classes; ++k)
    info.class_names.push_back(std::to_string(k));
}

// mean and std of a raw file without them, from one pass over its images.
void compute_normalization(hid_t images, const std::string& path, const DatasetInfo& info,
                           std::vector<double>* mean, std::vector<double>* std) {
  CONVNET_CHECK(info.layout == DatasetLayout::raw, path,
                ": no mean/std attributes; an encoded file needs them (convnet convert writes "
                "them; or add the per-channel values in 0..1 units as root attributes 'mean' "
                "and 'std')");
  ChannelStats stats(info.channels);
  const int64_t per_image = info.height * info.width * info.channels;
  const int64_t chunk = std::max<int64_t>(1, (int64_t{64} << 20) / per_image);
  std::vector<uint8_t> pixels;
  for (int64_t begin = 0; begin < info.count; begin += chunk) {
    const int64_t n = std::min(chunk, info.count - begin);
    pixels.resize(static_cast<std::size_t>(n * per_image));
    read_rows(images, H5T_NATIVE_UINT8, begin, n, pixels.data(), path + ": /images");
    stats.add(pixels.data(), n * info.height * info.width);
  }
  *mean = stats.mean();
  *std = stats.std();
  std::string values;
  for (int64_t k = 0; k < info.channels; ++k)
    values += (k ? ", " : "") + std::to_string((*mean)[k]) + " / " + std::to_string((*std)[k]);
  std::fprintf(stderr,
               "convnet: notice: %s has no mean/std attributes; computed over its %ld images "
               "(mean / std per channel: %s); store them as root attributes 'mean' and 'std' "
               "to skip this pass\n",
               path.c_str(), long(info.count), values.c_str());
}

}  // namespace

Dataset::Dataset(const std::string& spec, const DatasetOptions& options)
    : paths_(expand_dataset_paths(spec)) {
  for (const std::string& path : paths_) {
    auto shard = std::make_unique<Shard>();
    shard->path = path;
    shard->begin = info_.count;
    shard->file = open_hdf5_read_only(path, "dataset file");
    const hid_t root = shard->file.get();
    DatasetInfo& info = shard->info;
    info.layout = read_layout(root, path);
    read_optional_attributes(root, path, info);
    if (has_attribute(root, "mean") || has_attribute(root, "std")) {
      shard->mean = read_double_array_attribute(root, path, "mean");
      shard->std = read_double_array_attribute(root, path, "std");
    }

    std::vector<hsize_t> dims;
    if (info.layout == DatasetLayout::raw) {
      shard->data = open_dataset(root, path, "images", 4, H5T_SGN_NONE, 1, &dims);
      info.count = dims[0];
      info.height = dims[1];
      info.width = dims[2];
      info.channels = dims[3];
      check_image_dims(root, path, info);
    } else {
      shard->data = open_dataset(root, path, "encoded", 1, H5T_SGN_NONE, 1, &dims);
      const int64_t bytes = dims[0];
      Hdf5Id offsets = open_dataset(root, path, "offsets", 1, H5T_SGN_2, 8, &dims);
      CONVNET_CHECK(dims[0] >= 1, path, ": /offsets is empty");
      info.count = dims[0] - 1;
      shard->offsets.resize(dims[0]);
      read_all(offsets.get(), H5T_NATIVE_INT64, shard->offsets.data(), path + ": /offsets");
      CONVNET_CHECK(shard->offsets.front() == 0 && shard->offsets.back() == bytes, path,
                    ": /offsets must run from 0 to the size of /encoded (", bytes, ")");
      for (int64_t i = 0; i < info.count; ++i)
        CONVNET_CHECK(shard->offsets[i] <= shard->offsets[i + 1], path,
                      ": /offsets decreases at sample ", i);
      info.channels = read_int_attribute(root, path, "channels");
      CONVNET_CHECK(info.channels == 1 || info.channels == 3, path,
                    ": encoded datasets have 1 or 3 channels, not ", info.channels);
    }
    CONVNET_CHECK(info.count > 0, path, ": the dataset holds no samples");
    if (shard->mean.empty() && shard->std.empty())
      compute_normalization(shard->data.get(), path, info, &shard->mean, &shard->std);
    CONVNET_CHECK(static_cast<int64_t>(shard->mean.size()) == info.channels &&
                      static_cast<int64_t>(shard->std.size()) == info.channels,
                  path, ": mean/std must have one value per channel (", info.channels, ")");
    check_normalization(path, shard->mean, shard->std);
    Hdf5Id labels = open_dataset(root, path, "labels", 1, H5T_SGN_2, 8, &dims);
    CONVNET_CHECK(static_cast<int64_t>(dims[0]) == info.count, path, ": /labels holds ", dims[0],
                  " labels but the images ", info.count);
    std::vector<int64_t> shard_labels(info.count);
    read_all(labels.get(), H5T_NATIVE_INT64, shard_labels.data(), path + ": /labels");
    complete_classes(path, shard_labels, info);
    for (int64_t i = 0; i < info.count; ++i)
      CONVNET_CHECK(shard_labels[i] >= 0 && shard_labels[i] < info.num_classes, path, ": /labels[",
                    i, "] = ", shard_labels[i], " is outside [0, ", info.num_classes, ")");
    labels_.insert(labels_.end(), shard_labels.begin(), shard_labels.end());

    if (shards_.empty()) {
      info_ = info;
      info_.count = 0;
      info_.source.clear();
      mean_.assign(info.channels, 0.0);
      std_.assign(info.channels, 0.0);
    } else {
      const std::string& first = paths_.front();
      CONVNET_CHECK(info.layout == info_.layout && info.channels == info_.channels &&
                        info.height == info_.height && info.width == info_.width,
                    path, ": layout or image shape differs from ", first);
      CONVNET_CHECK(info.class_names == info_.class_names, path, ": classes differ from ", first);
    }
    for (int64_t k = 0; k < info.channels; ++k) {
      mean_[k] += shard->mean[k] * info.count;
      std_[k] += shard->std[k] * info.count;
    }
    info_.count += info.count;
    info_.source += (info_.source.empty() ? "" : "; ") + info.source;
    shards_.push_back(std::move(shard));
  }
  for (int64_t k = 0; k < info_.channels; ++k) {
    mean_[k] /= info_.count;
    std_[k] /= info_.count;
  }
  if (info_.layout == DatasetLayout::raw &&
      info_.count * info_.height * info_.width * info_.channels <= options.cache_bytes)
    for (auto& shard : shards_) {
      const DatasetInfo& info = shard->info;
      shard->cache.resize(info.count * info.height * info.width * info.channels);
      read_all(shard->data.get(), H5T_NATIVE_UINT8, shard->cache.data(), shard->path + ": /images");
    }
}

Dataset::~Dataset() = default;

const Dataset::Shard& Dataset::shard_of(int64_t index, int64_t* local) const {
  CONVNET_CHECK(index >= 0 && index < info_.count, "sample ", index, " outside the dataset of ",
                info_.count);
  auto it =
      std::upper_bound(shards_.begin(), shards_.end(), index,
                       [](int64_t i, const std::unique_ptr<Shard>& s) { return i < s->begin; });
  const Shard& shard = **(it - 1);
  *local = index - shard.begin;
  return shard;
}

std::string Dataset::describe(int64_t index) const {
  int64_t local = 0;
  const Shard& shard = shard_of(index, &local);
  return shard.path + " sample " + std::to_string(local);
}

void Dataset::read_raw(int64_t index, uint8_t* out) const {
  CONVNET_CHECK(info_.layout == DatasetLayout::raw, paths_.front(), ": not the raw layout");
  int64_t local = 0;
  const Shard& shard = shard_of(index, &local);
  const int64_t bytes = info_.height * info_.width * info_.channels;
  if (!shard.cache.empty()) {
    std::memcpy(out, &shard.cache[local * bytes], bytes);
    return;
  }
  read_rows(shard.data.get(), H5T_NATIVE_UINT8, local, 1, out,
            shard.path + ": /images sample " + std::to_string(local));
}

std::vector<uint8_t> Dataset::read_encoded(int64_t index) const {
  CONVNET_CHECK(info_.layout == DatasetLayout::encoded, paths_.front(), ": not the encoded layout");
  int64_t local = 0;
  const Shard& shard = shard_of(index, &local);
  const int64_t begin = shard.offsets[local], end = shard.offsets[local + 1];
  std::vector<uint8_t> bytes(end - begin);
  if (end > begin)
    read_rows(shard.data.get(), H5T_NATIVE_UINT8, begin, end - begin, bytes.data(),
              shard.path + ": /encoded sample " + std::to_string(local));
  return bytes;
}

Image Dataset::load(int64_t index) const {
  Image image;
  if (info_.layout == DatasetLayout::raw) {
    image.height = info_.height;
    image.width = info_.width;
    image.channels = info_.channels;
    image.pixels.resize(image.height * image.width * image.channels);
    read_raw(index, image.pixels.data());
    return image;
  }
  const std::vector<uint8_t> bytes = read_encoded(index);
  try {
    return decode_image(bytes.data(), bytes.size(), info_.channels);
  } catch (const DecodeError& e) {
    throw SampleError(describe(index) + " (/encoded): " + e.what());
  }
}

}  // namespace convnet
