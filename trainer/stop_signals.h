// SIGTERM, SIGUSR1, SIGINT and SIGHUP (unless ignored, as under nohup) ask a run to stop: the
// handler only records the request; the training loop agrees on it across ranks at the next step
// (one allreduce it does anyway), every rank finishes that step, rank 0
// writes a checkpoint, and the process exits with kExitResumable.
// mpirun forwards SIGUSR1 (and SIGTERM, then SIGKILL after a grace period:
// see README) to the ranks; Slurm's --signal=USR1@120 delivers SIGUSR1 before
// a time limit or preemption.
#pragma once

namespace convnet {

// Exit status of a run stopped early by a signal after a good checkpoint:
// resume it with --resume auto. (EX_TEMPFAIL of sysexits.h.)
constexpr int kExitResumable = 75;

// Installs the handlers for its lifetime (restoring the previous ones) and
// unblocks the three signals. Instances nest: the outermost installs and
// restores, and an inner one keeps a request recorded before it (convnet
// train installs them first thing, so that a signal during start-up stops
// the run cleanly after its first step).
class StopSignals {
 public:
  StopSignals();
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  bool requested() const;
  int signal_number() const;  // the last signal received, 0 if none
};

}  // namespace convnet
