// A rank that stops answering (stopped, swapped out, its host lost) leaves
// the others blocked in a collective forever: MPI notices a rank that exits,
// not one that hangs. The watchdog bounds that wait: the training loop arms
// it around every wait on other ranks. Once a wait has lasted a quarter of
// the timeout (at least 3 s) it warns, once per wait, with describe_stall's
// account (rank 0's: which ranks have not reached the step, on which hosts);
// at the timeout it prints the error with that account, and calls
// `on_timeout` (the trainer's: end the job, see trainer.cpp).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace convnet {

struct WatchdogHooks {
  std::function<void()> on_timeout;  // ends the job
  // Who is behind at `step`; "" when this rank cannot tell.
  std::function<std::string(int64_t step)> describe_stall;
  // Called about once a second while a wait lasts (a heartbeat to rank 0).
  std::function<void(int64_t step)> still_waiting;
};

class Watchdog {
 public:
  // timeout_s <= 0 disables it.
  Watchdog(double timeout_s, int rank, WatchdogHooks hooks);
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
  std::string stall_account() const;

  double timeout_s_;
  int rank_;
  WatchdogHooks hooks_;
  bool warned_ = false;  // for the wait armed now
  std::chrono::steady_clock::time_point last_beat_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool armed_ = false, stop_ = false;
  int64_t step_ = 0;
  const char* what_ = "";
  std::chrono::steady_clock::time_point since_;
  std::thread thread_;
};

}  // namespace convnet
