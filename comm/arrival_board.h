// Stall diagnosis: which ranks have reached a step, so that a job whose
// ranks wait on each other can say which rank is behind, and on which host.
//
// Every rank notes the step it has reached before it waits for the others
// (TrainStep: before the gradient allreduce), and again every second while
// it waits (its watchdog), and where it is within a step (waiting for data,
// computing), with one small non-blocking message to rank 0 per note;
// rank 0 reads the last step every rank noted and how long ago that note
// came. A rank whose notes stop coming while others' keep coming is the one
// that stopped answering (a stopped process, a lost host). A note whose
// predecessor has not left yet (rank 0 cannot be reached) is dropped, never
// queued: arrived() never blocks.
#pragma once

#include <cstdint>
#include <vector>

namespace convnet {

// Where a rank is within a step, in order.
enum class StepPhase : int64_t {
  data = 0,     // waiting for a micro-batch from the data loader
  compute = 1,  // forward and backward
  waiting = 2,  // done: waiting for the other ranks (the gradient allreduce)
};
// "in the data loader", "in forward/backward", "waiting for the others".
const char* describe(StepPhase phase);

struct Arrival {
  int64_t step = -1;  // the last step noted (-1: none yet)
  StepPhase phase = StepPhase::waiting;
  double seconds_ago = 0;  // since that note came (rank 0's clock)

  // Whether the rank has reached the wait of `s` (or gone past it).
  bool reached(int64_t s) const { return step > s || (step == s && phase == StepPhase::waiting); }
};

class ArrivalBoard {
 public:
  virtual ~ArrivalBoard() = default;
  // This rank is at `phase` of `step` (steps increase, phases within a step
  // in order). Thread-safe.
  virtual void note(int64_t step, StepPhase phase) = 0;
  // This rank has reached the wait of `step`.
  void arrived(int64_t step) { note(step, StepPhase::waiting); }
  // Rank 0: every rank's last note; other ranks: empty. Thread-safe with
  // arrived() (the watchdog's thread reads it).
  virtual std::vector<Arrival> arrivals() = 0;
};

}  // namespace convnet
