#include "core/durable_file.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
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

void remove_dead_temporaries(const std::string& path) {
  const std::filesystem::path target(path);
  const std::string prefix = target.filename().string() + ".tmp-";
  const std::filesystem::path dir = target.has_parent_path() ? target.parent_path() : ".";
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
    const std::string name = entry.path().filename().string();
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string digits = name.substr(prefix.size());
    if (digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos) continue;
    const pid_t pid = static_cast<pid_t>(std::stol(digits));
    if (kill(pid, 0) == 0 || errno != ESRCH || !entry.is_regular_file(error)) continue;
    if (std::filesystem::remove(entry.path(), error))
      std::fprintf(stderr, "convnet: removed %s, left by an interrupted write (process %d)\n",
                   entry.path().c_str(), int(pid));
  }
}

}  // namespace convnet
