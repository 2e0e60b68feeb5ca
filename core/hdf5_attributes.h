// Scalar attributes of HDF5 objects (files, groups, datasets), as h5py writes
// and reads them: int64, float64 arrays and variable-length UTF-8 strings.
// Every failure throws convnet::Error naming `path` and the attribute.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <string>
#include <vector>

namespace convnet {

void write_int_attribute(hid_t location, const char* name, int64_t value);
void write_string_attribute(hid_t location, const char* name, const std::string& value);
void write_double_array_attribute(hid_t location, const char* name,
                                  const std::vector<double>& values);
void write_string_array_attribute(hid_t location, const char* name,
                                  const std::vector<std::string>& values);

int64_t read_int_attribute(hid_t location, const std::string& path, const char* name);
std::string read_string_attribute(hid_t location, const std::string& path, const char* name);
std::vector<std::string> read_string_array_attribute(hid_t location, const std::string& path,
                                                     const char* name);
std::vector<double> read_double_array_attribute(hid_t location, const std::string& path,
                                                const char* name);
// Whether the attribute / link exists. HDF5 metadata that does not read back
// (a failed metadata checksum, a corrupt header) is damage: it throws, naming
// the file and the name, rather than answering "absent".
bool has_attribute(hid_t location, const char* name);
bool has_link(hid_t location, const std::string& path, const char* name);

}  // namespace convnet
