// A progress line on stderr for long commands (convert, eval): "12345/60000
// images (20%), ETA 3 s", redrawn with \r on a terminal; otherwise (a Slurm
// log) one line every 30 s and at the end.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>

namespace convnet {

class ProgressLine {
 public:
  explicit ProgressLine(int64_t total)
      : total_(total), start_(clock::now()), last_line_(start_), tty_(isatty(2)) {}
  void update(int64_t done, int64_t total) {
    total_ = total;
    update(done);
  }
  void update(int64_t done) {
    const clock::time_point now = clock::now();
    const bool last = done == total_;
    if (!tty_ && !last && now - last_line_ < std::chrono::seconds(30)) return;
    last_line_ = now;
    const double elapsed = std::chrono::duration<double>(now - start_).count();
    const double eta = done > 0 ? elapsed * (total_ - done) / done : 0;
    std::fprintf(stderr, "%s%ld/%ld images (%ld%%), ETA %.0f s%s", tty_ ? "\r" : "", long(done),
                 long(total_), long(100 * done / std::max<int64_t>(total_, 1)), eta,
                 tty_ ? "   " : "\n");
    if (tty_ && last) std::fprintf(stderr, "\n");
  }

 private:
  using clock = std::chrono::steady_clock;
  int64_t total_;
  clock::time_point start_, last_line_;
  bool tty_;
};

}  // namespace convnet
