// Making a finished file durable and visible in one step: fsync the
// temporary file, rename it over the final path, fsync the directory. A
// crash before the rename leaves the old file (or none) at `path`, never a
// partial one. Throws convnet::Error naming the path (e.g. disk full).
#pragma once

#include <string>

namespace convnet {

void fsync_and_rename(const std::string& temp, const std::string& path);

}  // namespace convnet
