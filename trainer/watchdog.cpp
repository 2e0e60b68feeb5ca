#include "trainer/watchdog.h"

#include <cstdio>

namespace convnet {

Watchdog::Watchdog(double timeout_s, int rank, std::function<void()> on_timeout)
    : timeout_s_(timeout_s), rank_(rank), on_timeout_(std::move(on_timeout)) {
  if (timeout_s_ > 0) thread_ = std::thread([this] { run(); });
}

Watchdog::~Watchdog() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Watchdog::arm(int64_t step, const char* what) {
  if (timeout_s_ <= 0) return;
  std::lock_guard<std::mutex> lock(mutex_);
  armed_ = true;
  step_ = step;
  what_ = what;
  since_ = std::chrono::steady_clock::now();
}

void Watchdog::disarm() {
  if (timeout_s_ <= 0) return;
  std::lock_guard<std::mutex> lock(mutex_);
  armed_ = false;
}

void Watchdog::run() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stop_) {
    wake_.wait_for(lock, std::chrono::milliseconds(200));
    if (!armed_) continue;
    const double waited =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - since_).count();
    if (waited < timeout_s_) continue;
    std::fprintf(stderr,
                 "convnet: error: rank %d waited %.0f s for the other ranks in %s of step %ld "
                 "(--comm-timeout): a rank stopped answering (the one that reports nothing); "
                 "ending the job\n",
                 rank_, waited, what_, long(step_));
    std::fflush(stderr);
    lock.unlock();
    on_timeout_();
    return;
  }
}

}  // namespace convnet
