// GradientReducer: averages the flat gradient buffer over ranks in buckets,
// overlapping the reductions with the backward pass (as PyTorch DDP).
//
// The gradient buffer (count floats) is laid out in reverse layer order, so
// backward finishes it from offset 0 upward. It is split into buckets of
// bucket_bytes (the last one shorter): bucket k is elements
// [k * B, min((k + 1) * B, count)) with B = bucket_bytes / sizeof(float).
// Bucket boundaries ignore layer boundaries; a layer's gradient may span two
// buckets.
//
// One step:
//   reducer.begin_step();
//   ... backward, calling reducer.mark_ready(n) whenever gradients [0, n) are final ...
//   reducer.finish();  // the buffer now holds the average over ranks
//
// Progress: a dedicated communication thread issues the reductions
// (MPI_Iallreduce through Communicator::allreduce_async) of the buckets that
// mark_ready() completed, in bucket order, and drives them (Open MPI makes no
// progress on its own: MPI_Test must be called). While backward runs it polls
// the requests every poll_interval and sleeps in between rather than spinning,
// leaving the cores to the compute threads; once finish() is called it waits in
// MPI_Wait. mark_ready() only records the count and wakes the thread, so it
// costs a mutex lock. The thread uses a duplicate of the communicator
// (Communicator::duplicate), so the caller may use the communicator during a
// step when its thread_support() is multiple; with serialized, the caller must
// not use any communicator between begin_step() and the return of finish().
//
// Device reductions (NCCL, comm/nccl_communicator.h) are not waited for on
// the host: once finish() is called and every bucket is started, the thread
// defers each one (PendingReduce::defer: the compute stream waits for it) and
// finish() returns, so the update the caller enqueues next runs after the
// average on the GPU while the host goes on to the next step. The thread
// keeps polling deferred reductions until they end, so a failure (a dead
// NCCL peer) is rethrown by the next call. Host reductions (MPI) cannot be
// deferred: finish() waits for them.
//
// With one rank (size() == 1) there is no thread and nothing is copied or
// touched: the average over one rank is the buffer itself.
//
// All ranks must construct the reducer together (duplicate() is collective)
// with the same count and options, and run the same steps. Between
// begin_step() and finish() the buffer belongs to the reducer: the caller may
// write gradients not yet marked ready but must not touch ready ones.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "comm/communicator.h"

namespace convnet {

struct GradientReducerOptions {
  // Bucket size; 25 MiB is PyTorch DDP's default. At least sizeof(float).
  std::size_t bucket_bytes = std::size_t{25} << 20;
  // true: buckets are reduced as soon as mark_ready() completes them.
  // false: mark_ready() only records; finish() reduces every bucket (no overlap).
  bool overlap = true;
  // false: the first step neither overlaps nor defers (buckets start at
  // finish(), which waits for them). The GPU trainer's choice: CUDA loads a
  // kernel at its first launch (lazy loading, the default) and waits for the
  // device to drain while holding the context lock, which an NCCL kernel
  // waiting for its proxy thread or a peer may never let happen (a known
  // deadlock). Every kernel of a step is launched in the first one, before
  // any NCCL kernel is in flight.
  bool overlap_first_step = true;
  // How often the communication thread drives in-flight reductions during
  // backward. Shorter reacts faster, longer disturbs compute less.
  std::chrono::microseconds poll_interval{50};
};

// Elements [offset, offset + count) of the gradient buffer.
struct BucketRange {
  std::size_t offset = 0;
  std::size_t count = 0;
};

// The buckets of a buffer of count floats (none when count is 0); throws when
// bucket_bytes < sizeof(float).
std::vector<BucketRange> split_buckets(std::size_t count, std::size_t bucket_bytes);

struct BucketTiming {
  BucketRange range;
  double launch_s = 0;  // when its reduction was started, seconds after begin_step()
  double done_s = 0;    // when its reduction was complete, seconds after begin_step()
  bool launched_before_finish = false;  // started before finish() was called
  // Deferred to the device (see above): done_s is when the compute stream was
  // made to wait for it, not when it ended.
  bool deferred = false;
};

// Statistics of the last step (begin_step() to the return of finish()).
struct ReduceStepStats {
  std::vector<BucketTiming> buckets;  // in bucket order
  double finish_called_s = 0;         // when finish() was called, after begin_step()
  double exposed_s = 0;  // how long finish() blocked its caller: communication not hidden

  std::size_t launched_before_finish() const;
  std::size_t done_before_finish() const;
};

class GradientReducer {
 public:
  // gradients: count floats, which must outlive the reducer. Collective.
  GradientReducer(Communicator& communicator, float* gradients, std::size_t count,
                  const GradientReducerOptions& options = {});
  // Waits for reductions still in flight (they write into the buffer).
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  // Starts a step; the previous step must be finished.
  void begin_step();
  // Gradients [0, count_done) are final. count_done never decreases within a
  // step and is at most count. Reductions of completed buckets start at once
  // (with overlap). Throws an error of the communication thread.
  void mark_ready(std::size_t count_done);
  // Marks every gradient ready, waits until every bucket is averaged and ends
  // the step. Rethrows an error of the communication thread; a reducer that
  // failed keeps throwing it.
  void finish();

  const std::vector<BucketRange>& buckets() const { return buckets_; }
  const GradientReducerOptions& options() const { return options_; }
  // Valid after finish().
  const ReduceStepStats& last_step() const { return stats_; }

 private:
  using Clock = std::chrono::steady_clock;
  double seconds_since_begin(Clock::time_point t) const;

  void run_thread();  // the communication thread
  void launch_ready(std::unique_lock<std::mutex>& lock, std::vector<std::size_t>& in_flight,
                    std::vector<PendingReduce>& pending);
  // Drives the reductions in flight and the deferred ones once, without the
  // mutex; records completions, deferrals and errors under it.
  void drive(std::unique_lock<std::mutex>& lock, std::vector<std::size_t>& in_flight,
             std::vector<PendingReduce>& pending, std::vector<PendingReduce>& deferred);
  bool launchable() const;          // a ready bucket waits to be started; needs mutex_
  bool finish_waits() const;        // finish() waits for buckets not yet done; needs mutex_
  void record_ready_single_rank();  // the one-rank path: ready buckets are done
  void rethrow_error() const;       // needs mutex_

  // Options and buckets come first: they are checked before the collective duplicate().
  GradientReducerOptions options_;
  std::vector<BucketRange> buckets_;
  float* gradients_;  // (count_)
  std::size_t count_;
  std::unique_ptr<Communicator> communicator_;  // a duplicate, used by the thread

  std::mutex mutex_;
  std::condition_variable wake_thread_;  // a bucket became ready, finish() or shutdown
  std::condition_variable step_done_;    // every bucket of the step is done
  // Guarded by mutex_:
  bool in_step_ = false;
  bool finishing_ = false;   // finish() was called in this step (until the next begin_step)
  bool plain_step_ = false;  // no overlap, no deferral in this step (overlap_first_step)
  bool stepped_ = false;     // a step has begun before
  bool shutdown_ = false;
  std::size_t ready_count_ = 0;   // gradients [0, ready_count_) are final
  std::size_t next_launch_ = 0;   // first bucket not yet started
  std::size_t done_buckets_ = 0;  // buckets complete in this step
  std::exception_ptr error_;
  Clock::time_point step_begin_;
  ReduceStepStats stats_;

  std::thread thread_;  // only with more than one rank; started last
};

}  // namespace convnet
