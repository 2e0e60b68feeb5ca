// RunDirectoryLock: one training per run directory at a time.
//
// Rank 0 of `convnet train` holds an exclusive POSIX record lock (fcntl
// F_SETLK) on RUN_DIR/.lock for as long as the run lives: a second training
// started in the same directory, on this host or another one sharing the file
// system (NFS and Lustre carry these locks), is refused naming the holder
// (its pid, host and start time, which the holder writes into the file). The
// kernel (or the NFS lock manager) releases the lock when the holder exits or
// dies, so a lock left by a killed run is never stale. A file system without
// locks is refused with a message saying so: two runs could not be kept apart.
// Holding the lock, it removes the temporary files (NAME.tmp-PID) that writes
// of earlier runs left when they were killed: no live run can own them.
#pragma once

#include <string>

namespace convnet {

class RunDirectoryLock {
 public:
  RunDirectoryLock() = default;  // holds nothing (every rank but 0)
  // Creates `run_dir` if needed and locks it, or throws naming the holder.
  explicit RunDirectoryLock(const std::string& run_dir);
  ~RunDirectoryLock();
  RunDirectoryLock(RunDirectoryLock&& other) noexcept;
  RunDirectoryLock& operator=(RunDirectoryLock&& other) noexcept;
  RunDirectoryLock(const RunDirectoryLock&) = delete;
  RunDirectoryLock& operator=(const RunDirectoryLock&) = delete;

  bool held() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

}  // namespace convnet
