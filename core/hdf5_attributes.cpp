#include "core/hdf5_attributes.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "core/hdf5_handle.h"

namespace convnet {

void write_int_attribute(hid_t location, const char* name, int64_t value) {
  Hdf5Id space(H5Screate(H5S_SCALAR), H5Sclose, "creating a dataspace");
  Hdf5Id attr(H5Acreate2(location, name, H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT),
              H5Aclose, name);
  CONVNET_CHECK(H5Awrite(attr.get(), H5T_NATIVE_INT64, &value) >= 0, "writing attribute ", name);
}

// Strings are written fixed-length, null-padded UTF-8: they live in the
// attribute's object header, which HDF5 checksums (with the file's V18
// metadata), where variable-length strings would live in the global heap,
// which has no checksum and whose damage crashes or hangs HDF5's reader.
// h5py reads them as bytes; readers here take both kinds.
Hdf5Id fixed_string_type(std::size_t longest) {
  Hdf5Id type(H5Tcopy(H5T_C_S1), H5Tclose, "creating a string type");
  H5Tset_size(type.get(), std::max<std::size_t>(longest, 1));
  H5Tset_strpad(type.get(), H5T_STR_NULLPAD);
  H5Tset_cset(type.get(), H5T_CSET_UTF8);
  return type;
}

void write_string_attribute(hid_t location, const char* name, const std::string& value) {
  Hdf5Id type = fixed_string_type(value.size());
  Hdf5Id space(H5Screate(H5S_SCALAR), H5Sclose, "creating a dataspace");
  Hdf5Id attr(H5Acreate2(location, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT),
              H5Aclose, name);
  std::string padded = value;
  padded.resize(std::max<std::size_t>(value.size(), 1), '\0');
  CONVNET_CHECK(H5Awrite(attr.get(), type.get(), padded.data()) >= 0, "writing attribute ", name);
}

namespace {

// The HDF5 type class of an attribute as stored (integer, float, string, ...).
H5T_class_t stored_class(hid_t attr, const char* name) {
  Hdf5Id file_type(H5Aget_type(attr), H5Tclose, name);
  return H5Tget_class(file_type.get());
}

// The name of the file `location` is in, for messages.
std::string file_of(hid_t location) {
  const ssize_t size = H5Fget_name(location, nullptr, 0);
  if (size <= 0) return "an HDF5 file";
  std::string name(static_cast<std::size_t>(size) + 1, '\0');
  H5Fget_name(location, name.data(), name.size());
  name.resize(static_cast<std::size_t>(size));
  return name;
}

[[noreturn]] void throw_damaged(const std::string& path, const char* what, const char* name) {
  throw Error(detail::concat(path, ": damaged file: the HDF5 metadata holding ", what, " '", name,
                             "' does not read back (a metadata checksum mismatch or a corrupt ",
                             "header)"));
}

bool attribute_exists(hid_t location, const std::string& path, const char* name) {
  const htri_t exists = H5Aexists(location, name);
  if (exists < 0) throw_damaged(path, "attribute", name);
  return exists > 0;
}

// The attribute, opened; absent ("PATH: missing WHAT 'NAME'") or unreadable
// (damage) is an error.
Hdf5Id open_attribute(hid_t location, const std::string& path, const char* name, const char* what) {
  CONVNET_CHECK(attribute_exists(location, path, name), path, ": missing ", what, " '", name, "'");
  return Hdf5Id::opened(H5Aopen(location, name, H5P_DEFAULT), H5Aclose, path,
                        std::string("attribute '") + name + "'");
}

}  // namespace

bool has_link(hid_t location, const std::string& path, const char* name) {
  const htri_t exists = H5Lexists(location, name, H5P_DEFAULT);
  if (exists < 0) throw_damaged(path, "object", name);
  return exists > 0;
}

int64_t read_int_attribute(hid_t location, const std::string& path, const char* name) {
  Hdf5Id attr = open_attribute(location, path, name, "root attribute");
  // HDF5 would convert 10.7 to 10: a float where an integer belongs is damage.
  CONVNET_CHECK(stored_class(attr.get(), name) == H5T_INTEGER, path, ": attribute '", name,
                "' is stored as a non-integer type; it must be an integer");
  int64_t value = 0;
  CONVNET_CHECK(H5Aread(attr.get(), H5T_NATIVE_INT64, &value) >= 0, path, ": attribute '", name,
                "' is not an integer");
  return value;
}

std::string read_string_attribute(hid_t location, const std::string& path, const char* name) {
  Hdf5Id attr = open_attribute(location, path, name, "root attribute");
  Hdf5Id file_type(H5Aget_type(attr.get()), H5Tclose, name);
  CONVNET_CHECK(H5Tget_class(file_type.get()) == H5T_STRING, path, ": attribute '", name,
                "' is not a string");
  if (H5Tis_variable_str(file_type.get()) > 0) {
    Hdf5Id type(H5Tcopy(H5T_C_S1), H5Tclose, "creating a string type");
    H5Tset_size(type.get(), H5T_VARIABLE);
    H5Tset_cset(type.get(), H5Tget_cset(file_type.get()));
    char* text = nullptr;
    CONVNET_CHECK(H5Aread(attr.get(), type.get(), &text) >= 0, path, ": reading attribute ", name);
    std::string value = text ? text : "";
    Hdf5Id space(H5Aget_space(attr.get()), H5Sclose, name);
    H5Dvlen_reclaim(type.get(), space.get(), H5P_DEFAULT, &text);
    return value;
  }
  const std::size_t size = H5Tget_size(file_type.get());
  std::vector<char> buffer(size + 1, '\0');
  CONVNET_CHECK(H5Aread(attr.get(), file_type.get(), buffer.data()) >= 0, path,
                ": reading attribute ", name);
  return std::string(buffer.data());
}

void write_double_array_attribute(hid_t location, const char* name,
                                  const std::vector<double>& values) {
  const hsize_t n = values.size();
  Hdf5Id space(H5Screate_simple(1, &n, nullptr), H5Sclose, "creating a dataspace");
  Hdf5Id attr(H5Acreate2(location, name, H5T_IEEE_F64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT),
              H5Aclose, name);
  CONVNET_CHECK(H5Awrite(attr.get(), H5T_NATIVE_DOUBLE, values.data()) >= 0, "writing attribute ",
                name);
}

void write_string_array_attribute(hid_t location, const char* name,
                                  const std::vector<std::string>& values) {
  std::size_t longest = 1;
  for (const std::string& v : values) longest = std::max(longest, v.size());
  Hdf5Id type = fixed_string_type(longest);
  const hsize_t n = values.size();
  Hdf5Id space(H5Screate_simple(1, &n, nullptr), H5Sclose, "creating a dataspace");
  Hdf5Id attr(H5Acreate2(location, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT),
              H5Aclose, name);
  std::string packed(values.size() * longest, '\0');
  for (std::size_t i = 0; i < values.size(); ++i)
    packed.replace(i * longest, values[i].size(), values[i]);
  CONVNET_CHECK(H5Awrite(attr.get(), type.get(), packed.data()) >= 0, "writing attribute ", name);
}

std::vector<std::string> read_string_array_attribute(hid_t location, const std::string& path,
                                                     const char* name) {
  Hdf5Id attr = open_attribute(location, path, name, "attribute");
  Hdf5Id file_type(H5Aget_type(attr.get()), H5Tclose, name);
  CONVNET_CHECK(H5Tget_class(file_type.get()) == H5T_STRING, path, ": attribute '", name,
                "' is not an array of strings");
  Hdf5Id space(H5Aget_space(attr.get()), H5Sclose, name);
  const hssize_t n = H5Sget_simple_extent_npoints(space.get());
  if (H5Tis_variable_str(file_type.get()) <= 0) {  // fixed length, as convnet writes them
    const std::size_t size = H5Tget_size(file_type.get());
    CONVNET_CHECK(size > 0 && n >= 0, path, ": attribute '", name, "' is damaged");
    std::vector<char> buffer(size * static_cast<std::size_t>(n) + 1, '\0');
    CONVNET_CHECK(H5Aread(attr.get(), file_type.get(), buffer.data()) >= 0, path,
                  ": reading attribute ", name);
    std::vector<std::string> values;
    for (hssize_t i = 0; i < n; ++i) {
      const char* text = buffer.data() + static_cast<std::size_t>(i) * size;
      values.emplace_back(text, strnlen(text, size));
    }
    return values;
  }
  Hdf5Id type(H5Tcopy(H5T_C_S1), H5Tclose, "creating a string type");
  H5Tset_size(type.get(), H5T_VARIABLE);
  H5Tset_cset(type.get(), H5Tget_cset(file_type.get()));
  std::vector<char*> texts(std::max<hssize_t>(n, 0), nullptr);
  CONVNET_CHECK(H5Aread(attr.get(), type.get(), texts.data()) >= 0, path, ": reading attribute ",
                name);
  std::vector<std::string> values;
  for (char* t : texts) values.emplace_back(t ? t : "");
  H5Dvlen_reclaim(type.get(), space.get(), H5P_DEFAULT, texts.data());
  return values;
}

std::vector<double> read_double_array_attribute(hid_t location, const std::string& path,
                                                const char* name) {
  Hdf5Id attr = open_attribute(location, path, name, "attribute");
  Hdf5Id space(H5Aget_space(attr.get()), H5Sclose, name);
  const hssize_t n = H5Sget_simple_extent_npoints(space.get());
  std::vector<double> values(std::max<hssize_t>(n, 0));
  CONVNET_CHECK(stored_class(attr.get(), name) == H5T_FLOAT, path, ": attribute '", name,
                "' is stored as a non-floating-point type; it must hold floating-point numbers");
  CONVNET_CHECK(H5Aread(attr.get(), H5T_NATIVE_DOUBLE, values.data()) >= 0, path,
                ": reading attribute ", name);
  return values;
}

bool has_attribute(hid_t location, const char* name) {
  return attribute_exists(location, file_of(location), name);
}

}  // namespace convnet
