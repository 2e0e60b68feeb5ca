#include "core/durable_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "core/error.h"

namespace convnet {

void check_output_file(const std::string& path, const std::vector<std::string>& inputs) {
  struct stat out;
  if (stat(path.c_str(), &out) != 0) return;  // a new file
  CONVNET_CHECK(S_ISREG(out.st_mode), path,
                " exists and is not a regular file (a device, FIFO or directory); refusing to "
                "replace it: give another output path");
  for (const std::string& input : inputs) {
    struct stat in;
    CONVNET_CHECK(
        stat(input.c_str(), &in) != 0 || in.st_dev != out.st_dev || in.st_ino != out.st_ino,
        "the output ", path, " is the input ", input,
        "; refusing to overwrite it: give another output path");
  }
}

void fsync_and_rename(const std::string& temp, const std::string& path) {
  check_output_file(path);
  const int fd = open(temp.c_str(), O_RDONLY);
  const bool synced = fd >= 0 && fsync(fd) == 0;
  if (fd >= 0) close(fd);
  CONVNET_CHECK(synced, "syncing ", temp, " to disk (disk full?)");
  CONVNET_CHECK(std::rename(temp.c_str(), path.c_str()) == 0, "cannot rename ", temp, " to ", path);
  // The rename itself is durable once the directory is synced.
  std::string dir = std::filesystem::path(path).parent_path().string();
  const int dir_fd = open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dir_fd >= 0) {
    fsync(dir_fd);
    close(dir_fd);
  }
}

}  // namespace convnet
