// Making a finished file durable and visible in one step: fsync the
// temporary file, rename it over the final path, fsync the directory. A
// crash before the rename leaves the old file (or none) at `path`, never a
// partial one. Throws convnet::Error naming the path (e.g. disk full).
#pragma once

#include <string>
#include <vector>

namespace convnet {

// Refuses (naming it) an output path that exists and is not a regular file
// (a device such as /dev/null, a FIFO, a directory: the rename would replace
// it), or that is the same file as one of `inputs`.
void check_output_file(const std::string& path, const std::vector<std::string>& inputs = {});

// Checks `path` (check_output_file), then makes temp durable and renames it
// over path.
void fsync_and_rename(const std::string& temp, const std::string& path);

// Removes PATH.tmp-<pid> files whose process no longer runs on this host (the
// temporaries of writes killed before their rename), with a notice on stderr.
void remove_dead_temporaries(const std::string& path);

}  // namespace convnet
