#include "trainer/run_lock.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <utility>

#include "core/error.h"

namespace convnet {
namespace {

// What the holder wrote into the lock file: "pid P on host H since T".
std::string holder_of(int fd) {
  char text[256] = {};
  const ssize_t n = pread(fd, text, sizeof text - 1, 0);
  std::string holder = n > 0 ? std::string(text, static_cast<std::size_t>(n)) : "";
  while (!holder.empty() && (holder.back() == '\n' || holder.back() == '\0')) holder.pop_back();
  return holder.empty() ? "a process that has not written its name yet" : holder;
}

void write_holder(int fd) {
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  char started[32] = {};
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  std::strftime(started, sizeof started, "%Y-%m-%dT%H:%M:%SZ", &utc);
  const std::string text =
      "pid " + std::to_string(getpid()) + " on host " + host + " since " + started + "\n";
  if (ftruncate(fd, 0) != 0 || pwrite(fd, text.data(), text.size(), 0) < 0) {
    // The lock itself is held; only the holder's description is missing.
  }
}

// NAME.tmp-PID: the temporary of an interrupted durable write.
bool is_temporary(const std::string& name) {
  const std::size_t mark = name.rfind(".tmp-");
  if (mark == std::string::npos || mark + 5 == name.size()) return false;
  return name.find_first_not_of("0123456789", mark + 5) == std::string::npos;
}

void remove_stale_temporaries(const std::string& run_dir) {
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(run_dir, error)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_regular_file(error) || !is_temporary(name)) continue;
    if (std::filesystem::remove(entry.path(), error))
      std::fprintf(stderr, "convnet: removed %s, left by an interrupted write of an earlier run\n",
                   entry.path().c_str());
  }
}

}  // namespace

RunDirectoryLock::RunDirectoryLock(const std::string& run_dir) {
  std::error_code error;
  std::filesystem::create_directories(run_dir, error);
  CONVNET_CHECK(!error, "cannot create run directory ", run_dir, ": ", error.message());
  const std::string path = run_dir + "/.lock";
  fd_ = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  CONVNET_CHECK(fd_ >= 0, "cannot open ", path,
                " to lock the run directory: ", std::strerror(errno));
  struct flock whole {};
  whole.l_type = F_WRLCK;
  whole.l_whence = SEEK_SET;
  if (fcntl(fd_, F_SETLK, &whole) == 0) {
    write_holder(fd_);
    remove_stale_temporaries(run_dir);
    return;
  }
  const int cause = errno;
  const std::string holder = cause == EACCES || cause == EAGAIN ? holder_of(fd_) : "";
  close(fd_);
  fd_ = -1;
  CONVNET_CHECK(holder.empty(), "run directory ", run_dir, " is in use by another convnet train (",
                holder, "): wait for it to end, or choose another --run-dir");
  CONVNET_CHECK(false, "cannot lock run directory ", run_dir, " (", std::strerror(cause),
                "): its file system does not support file locks, so two trainings there could "
                "not be kept apart; choose a --run-dir on a file system with locks");
}

RunDirectoryLock::~RunDirectoryLock() {
  if (fd_ >= 0) close(fd_);  // releases the lock; the file stays for the next run
}

RunDirectoryLock::RunDirectoryLock(RunDirectoryLock&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)) {}

RunDirectoryLock& RunDirectoryLock::operator=(RunDirectoryLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) close(fd_);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

}  // namespace convnet
