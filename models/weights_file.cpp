#include "models/weights_file.h"

#include <hdf5.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "core/error.h"
#include "core/hdf5_attributes.h"
#include "core/hdf5_file.h"

namespace convnet {
namespace {

Shape dataset_shape(hid_t dataset) {
  Hdf5Id space(H5Dget_space(dataset), H5Sclose, "reading a dataset's shape");
  const int rank = H5Sget_simple_extent_ndims(space.get());
  std::vector<hsize_t> dims(rank);
  H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  return Shape(std::vector<int64_t>(dims.begin(), dims.end()));
}

// The HDF5 type class of a dataset as stored (integer, float, ...).
H5T_class_t dataset_class(hid_t dataset, const std::string& path, const std::string& name) {
  Hdf5Id type(H5Dget_type(dataset), H5Tclose, (path + ": type of " + name).c_str());
  return H5Tget_class(type.get());
}

}  // namespace

Hdf5Id create_checksummed_dataset(hid_t location, const std::string& name, hid_t file_type,
                                  const Shape& shape, const std::string& file_name) {
  const std::vector<hsize_t> dims(shape.dims().begin(), shape.dims().end());
  Hdf5Id props(H5Pcreate(H5P_DATASET_CREATE), H5Pclose, "creating dataset properties");
  if (shape.rank() == 0) {
    // Scalars cannot be chunked (no Fletcher32): a compact dataset lives in
    // its object header, which the v1.8+ file format checksums.
    H5Pset_layout(props.get(), H5D_COMPACT);
  } else {
    // One chunk of up to 4 MiB along the first dimension, Fletcher32 on each.
    std::vector<hsize_t> chunk = dims;
    const hsize_t row = shape.numel() / shape[0];
    chunk[0] = std::max<hsize_t>(1, std::min<hsize_t>(dims[0], (hsize_t(1) << 20) / row));
    H5Pset_chunk(props.get(), shape.rank(), chunk.data());
    H5Pset_fletcher32(props.get());
  }
  Hdf5Id space(shape.rank() == 0 ? H5Screate(H5S_SCALAR)
                                 : H5Screate_simple(shape.rank(), dims.data(), nullptr),
               H5Sclose, name.c_str());
  return Hdf5Id(H5Dcreate2(location, name.c_str(), file_type, space.get(), H5P_DEFAULT, props.get(),
                           H5P_DEFAULT),
                H5Dclose, ("creating dataset " + name + " in " + file_name).c_str());
}

void save_weights(const std::string& path, const WeightsMetadata& metadata, const ParamStore& store,
                  const std::function<void(hid_t)>& write_extra) {
  CONVNET_CHECK(store.finalized(), "saving the weights of an unfinalized model");
  Hdf5Id access(H5Pcreate(H5P_FILE_ACCESS), H5Pclose, "creating file access properties");
  H5Pset_libver_bounds(access.get(), H5F_LIBVER_V18, H5F_LIBVER_LATEST);  // metadata checksums
  TemporaryHdf5File file(path, access.get());
  const std::string& temp = file.temp_path();
  const hid_t root = file.id();
  write_string_attribute(root, "model", metadata.model);
  write_int_attribute(root, "num_classes", metadata.num_classes);
  write_int_attribute(root, "in_channels", metadata.in_channels);
  write_int_attribute(root, "format_version", kWeightsFormatVersion);
  if (!metadata.mean.empty()) write_double_array_attribute(root, "mean", metadata.mean);
  if (!metadata.std.empty()) write_double_array_attribute(root, "std", metadata.std);
  if (metadata.image_size > 0) write_int_attribute(root, "image_size", metadata.image_size);
  Hdf5Id group(H5Gcreate2(root, "model", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose,
               "creating group /model");
  for (std::size_t i = 0; i < store.entries().size(); ++i) {
    const ParamEntry& e = store.entries()[i];
    const int id = static_cast<int>(i);
    const hid_t file_type = e.kind == EntryKind::counter ? H5T_STD_I64LE : H5T_IEEE_F32LE;
    Hdf5Id dataset = create_checksummed_dataset(
        group.get(), e.name, file_type, e.kind == EntryKind::counter ? Shape{} : e.shape, temp);
    herr_t status;
    if (e.kind == EntryKind::counter) {
      const int64_t value = store.counter(id);
      status = H5Dwrite(dataset.get(), H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, &value);
    } else {
      const Tensor t = e.kind == EntryKind::buffer ? store.buffer(id) : store.param(id);
      status =
          H5Dwrite(dataset.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data<float>());
    }
    CONVNET_CHECK(status >= 0, "writing ", e.name, " to ", temp, " (disk full?)");
  }
  group.reset();
  if (write_extra) write_extra(root);
  file.commit();  // on any failure above, the destructor removes the temporary file
}

WeightsMetadata read_weights_metadata(const std::string& path) {
  Hdf5Id file = open_hdf5_read_only(path);
  WeightsMetadata m;
  m.model = read_string_attribute(file.get(), path, "model");
  m.num_classes = read_int_attribute(file.get(), path, "num_classes");
  m.in_channels = read_int_attribute(file.get(), path, "in_channels");
  m.format_version = read_int_attribute(file.get(), path, "format_version");
  if (has_attribute(file.get(), "mean"))
    m.mean = read_double_array_attribute(file.get(), path, "mean");
  if (has_attribute(file.get(), "std"))
    m.std = read_double_array_attribute(file.get(), path, "std");
  if (has_attribute(file.get(), "image_size"))
    m.image_size = read_int_attribute(file.get(), path, "image_size");
  CONVNET_CHECK(m.format_version >= 1 && m.format_version <= kWeightsFormatVersion, path,
                ": unsupported format_version ", m.format_version, " (this convnet reads 1 to ",
                kWeightsFormatVersion, ")");
  CONVNET_CHECK(m.num_classes >= 1 && m.in_channels >= 1, path,
                ": damaged metadata: ", m.num_classes, " classes and ", m.in_channels,
                " input channels");
  CONVNET_CHECK(m.image_size >= 0 && m.image_size <= 16384, path, ": damaged metadata: image_size ",
                m.image_size);
  // Training refuses a std below 1e-3, so a recorded one is damage (of this
  // file, not of any dataset's channel).
  CONVNET_CHECK(m.mean.size() == m.std.size(), path, ": damaged normalization: ", m.mean.size(),
                " means but ", m.std.size(), " standard deviations");
  for (std::size_t k = 0; k < m.std.size(); ++k)
    CONVNET_CHECK(std::isfinite(m.mean[k]) && std::isfinite(m.std[k]) && m.std[k] >= 1e-3, path,
                  ": damaged normalization: channel ", k, " has the recorded mean ", m.mean[k],
                  " and std ", m.std[k], " (training records finite values and a std >= 1e-3)");
  return m;
}

std::vector<float> read_weights_tensor(const std::string& path, const std::string& key,
                                       Shape* shape) {
  Hdf5Id file = open_hdf5_read_only(path);
  const std::string name = "model/" + key;
  CONVNET_CHECK(has_link(file.get(), path, "model") && H5Lexists(file.get(), name.c_str(), 0) > 0,
                path, ": missing key ", key);
  Hdf5Id dataset =
      Hdf5Id::opened(H5Dopen2(file.get(), name.c_str(), H5P_DEFAULT), H5Dclose, path, "key " + key);
  CONVNET_CHECK(dataset_class(dataset.get(), path, key) == H5T_FLOAT, path, ": key ", key,
                " is not stored as floating point");
  *shape = dataset_shape(dataset.get());
  std::vector<float> values(static_cast<std::size_t>(shape->numel()));
  CONVNET_CHECK(
      H5Dread(dataset.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()) >= 0,
      path, ": reading ", key, " failed (corrupt or truncated file)");
  return values;
}

void load_weights(const std::string& path, ParamStore& store, const std::string& expected_model,
                  const std::function<bool(const std::string&)>& skip) {
  const WeightsMetadata m = read_weights_metadata(path);
  CONVNET_CHECK(expected_model.empty() || m.model == expected_model, path, " holds weights of ",
                m.model, ", not ", expected_model);
  CONVNET_CHECK(store.finalized(), "loading weights into an unfinalized model");
  Hdf5Id file = open_hdf5_read_only(path);
  CONVNET_CHECK(has_link(file.get(), path, "model"), path, ": missing group /model");
  Hdf5Id group =
      Hdf5Id::opened(H5Gopen2(file.get(), "model", H5P_DEFAULT), H5Gclose, path, "group /model");
  H5G_info_t info;
  CONVNET_CHECK(H5Gget_info(group.get(), &info) >= 0, path, ": reading /model");
  for (std::size_t i = 0; i < store.entries().size(); ++i) {
    const ParamEntry& e = store.entries()[i];
    const int id = static_cast<int>(i);
    CONVNET_CHECK(has_link(group.get(), path, e.name.c_str()), path, ": missing key ", e.name,
                  " (expected shape ", e.shape, ")");
    if (skip && skip(e.name)) continue;
    Hdf5Id dataset = Hdf5Id::opened(H5Dopen2(group.get(), e.name.c_str(), H5P_DEFAULT), H5Dclose,
                                    path, "key " + e.name);
    const Shape shape = dataset_shape(dataset.get());
    CONVNET_CHECK(shape == e.shape, path, ": key ", e.name, " has shape ", shape,
                  " in the file but ", e.shape, " in the model");
    // HDF5 converts between any numeric types: an integer parameter or a
    // fractional counter is damage, not a value to round.
    const H5T_class_t stored = dataset_class(dataset.get(), path, e.name);
    const bool counter = e.kind == EntryKind::counter;
    CONVNET_CHECK(stored == (counter ? H5T_INTEGER : H5T_FLOAT), path, ": key ", e.name,
                  " is stored as ", counter ? "a non-integer type" : "a non-floating-point type",
                  "; ", counter ? "a counter is an integer" : "parameters and buffers are floats");
    herr_t status;
    if (e.kind == EntryKind::counter) {
      status = H5Dread(dataset.get(), H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                       &store.counter(id));
    } else {
      const Tensor t = e.kind == EntryKind::buffer ? store.buffer(id) : store.param(id);
      status =
          H5Dread(dataset.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data<float>());
    }
    CONVNET_CHECK(status >= 0, path, ": reading ", e.name, " failed (corrupt or truncated file)");
    if (!counter) {
      const Tensor t = e.kind == EntryKind::buffer ? store.buffer(id) : store.param(id);
      const float* values = t.data<float>();
      CONVNET_CHECK(
          std::all_of(values, values + t.numel(), [](float v) { return std::isfinite(v); }), path,
          ": key ", e.name,
          " holds non-finite values (NaN or inf): the model it was saved from diverged");
      const bool variance =
          e.name.size() > 12 && e.name.rfind(".running_var") == e.name.size() - 12;
      CONVNET_CHECK(
          !variance || std::all_of(values, values + t.numel(), [](float v) { return v >= 0; }),
          path, ": key ", e.name, " holds a negative variance: damaged file");
    }
  }
  if (info.nlinks != store.entries().size()) {
    // Name the first key the model does not have.
    for (hsize_t k = 0; k < info.nlinks; ++k) {
      char name[1024] = {0};
      H5Lget_name_by_idx(group.get(), ".", H5_INDEX_NAME, H5_ITER_INC, k, name, sizeof(name),
                         H5P_DEFAULT);
      CONVNET_CHECK(store.find(name) >= 0, path, ": key ", name, " is not a parameter of ",
                    m.model.empty() ? std::string("this model") : m.model);
    }
  }
}

}  // namespace convnet
