// A rank that stops answering (stopped, swapped out, network partition)
// leaves the others blocked in a collective forever: MPI notices a rank that
// exits, not one that hangs. The watchdog bounds that wait: the training loop
// arms it around every wait on other ranks, and when one lasts longer than
// the timeout a thread prints which rank waited, at which step and where, and
// calls `on_timeout` (the trainer passes Communicator::abort, which ends every
// rank of the job). The hung rank is the one that prints nothing.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace convnet {

class Watchdog {
 public:
  // timeout_s <= 0 disables it.
  Watchdog(double timeout_s, int rank, std::function<void()> on_timeout);
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // Marks the start and the end of a wait on other ranks.
  void arm(int64_t step, const char* what);
  void disarm();

  // RAII arm/disarm.
  class Scope {
   public:
    Scope(Watchdog& watchdog, int64_t step, const char* what) : watchdog_(watchdog) {
      watchdog_.arm(step, what);
    }
    ~Scope() { watchdog_.disarm(); }

   private:
    Watchdog& watchdog_;
  };

 private:
  void run();

  double timeout_s_;
  int rank_;
  std::function<void()> on_timeout_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool armed_ = false, stop_ = false;
  int64_t step_ = 0;
  const char* what_ = "";
  std::chrono::steady_clock::time_point since_;
  std::thread thread_;
};

}  // namespace convnet
