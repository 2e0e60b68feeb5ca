#include "trainer/watchdog.h"

#include <algorithm>
#include <cstdio>

namespace convnet {

Watchdog::Watchdog(double timeout_s, int rank, WatchdogHooks hooks)
    : timeout_s_(timeout_s), rank_(rank), hooks_(std::move(hooks)) {
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
  warned_ = false;
  step_ = step;
  what_ = what;
  since_ = std::chrono::steady_clock::now();
}

void Watchdog::disarm() {
  if (timeout_s_ <= 0) return;
  std::lock_guard<std::mutex> lock(mutex_);
  armed_ = false;
}

std::string Watchdog::stall_account() const {
  return hooks_.describe_stall ? hooks_.describe_stall(step_) : std::string();
}

void Watchdog::run() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stop_) {
    wake_.wait_for(lock, std::chrono::milliseconds(200));
    if (!armed_) continue;
    const auto now = std::chrono::steady_clock::now();
    const double waited = std::chrono::duration<double>(now - since_).count();
    if (hooks_.still_waiting && now - last_beat_ >= std::chrono::seconds(1)) {
      last_beat_ = now;
      hooks_.still_waiting(step_);
    }
    if (waited >= std::max(3.0, timeout_s_ / 4) && !warned_ && waited < timeout_s_) {
      warned_ = true;
      const std::string account = stall_account();
      if (!account.empty())
        std::fprintf(stderr, "convnet: warning: rank %d has waited %.0f s in %s of step %ld: %s\n",
                     rank_, waited, what_, long(step_), account.c_str());
      std::fflush(stderr);
    }
    if (waited < timeout_s_) continue;
    std::string account = stall_account();
    if (account.empty()) account = "a rank stopped answering (the one that reports nothing)";
    std::fprintf(stderr,
                 "convnet: error: rank %d waited %.0f s for the other ranks in %s of step %ld "
                 "(--comm-timeout): %s; ending the job\n",
                 rank_, waited, what_, long(step_), account.c_str());
    std::fflush(stderr);
    lock.unlock();
    hooks_.on_timeout();
    return;
  }
}

}  // namespace convnet
