// Stall diagnosis: which ranks have reached a step, so that a job whose
// ranks wait on each other can say which rank is behind, and on which host.
//
// Every rank notes the step it has reached before it waits for the others
// (TrainStep: before the gradient allreduce), and again every second while
// it waits (its watchdog), with one small non-blocking message to rank 0;
// rank 0 reads the last step every rank noted and how long ago that note
// came. A rank whose notes stop coming while others' keep coming is the one
// that stopped answering (a stopped process, a lost host). A note whose
// predecessor has not left yet (rank 0 cannot be reached) is dropped, never
// queued: arrived() never blocks.
#pragma once

#include <cstdint>
#include <vector>

namespace convnet {

struct Arrival {
  int64_t step = -1;       // the last step noted (-1: none yet)
  double seconds_ago = 0;  // since that note came (rank 0's clock)
};

class ArrivalBoard {
 public:
  virtual ~ArrivalBoard() = default;
  // This rank has reached `step` (increasing). Thread-safe.
  virtual void arrived(int64_t step) = 0;
  // Rank 0: every rank's last note; other ranks: empty. Thread-safe with
  // arrived() (the watchdog's thread reads it).
  virtual std::vector<Arrival> arrivals() = 0;
};

}  // namespace convnet
