#include "comm/gradient_reducer.h"

#include <algorithm>
#include <utility>

#include "core/error.h"

namespace convnet {

namespace {

// Checks the arguments before the collective duplicate(), so that a bad
// argument fails on every rank alike instead of inside a collective.
std::unique_ptr<Communicator> duplicate_checked(Communicator& communicator, const float* gradients,
                                                std::size_t count,
                                                const GradientReducerOptions& options) {
  CONVNET_CHECK(gradients != nullptr || count == 0, "a gradient buffer of ", count,
                " floats at null");
  CONVNET_CHECK(options.poll_interval.count() >= 0, "negative poll_interval");
  return communicator.duplicate();
}

}  // namespace

std::vector<BucketRange> split_buckets(std::size_t count, std::size_t bucket_bytes) {
  CONVNET_CHECK(bucket_bytes >= sizeof(float), "bucket_bytes ", bucket_bytes,
                " is smaller than one float");
  const std::size_t per_bucket = bucket_bytes / sizeof(float);
  std::vector<BucketRange> buckets;
  buckets.reserve((count + per_bucket - 1) / per_bucket);
  for (std::size_t offset = 0; offset < count; offset += per_bucket)
    buckets.push_back({offset, std::min(per_bucket, count - offset)});
  return buckets;
}

std::size_t ReduceStepStats::launched_before_finish() const {
  std::size_t n = 0;
  for (const BucketTiming& bucket : buckets) n += bucket.launched_before_finish ? 1 : 0;
  return n;
}

std::size_t ReduceStepStats::done_before_finish() const {
  std::size_t n = 0;
  for (const BucketTiming& bucket : buckets) n += bucket.done_s < finish_called_s ? 1 : 0;
  return n;
}

GradientReducer::GradientReducer(Communicator& communicator, float* gradients, std::size_t count,
                                 const GradientReducerOptions& options)
    : options_(options),
      buckets_(split_buckets(count, options.bucket_bytes)),
      gradients_(gradients),
      count_(count),
      communicator_(duplicate_checked(communicator, gradients, count, options)) {
  stats_.buckets.resize(buckets_.size());
  if (communicator_->size() > 1) thread_ = std::thread(&GradientReducer::run_thread, this);
}

GradientReducer::~GradientReducer() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    shutdown_ = true;
  }
  wake_thread_.notify_all();
  if (thread_.joinable()) thread_.join();
}

double GradientReducer::seconds_since_begin(Clock::time_point t) const {
  return std::chrono::duration<double>(t - step_begin_).count();
}

void GradientReducer::rethrow_error() const {
  if (error_) std::rethrow_exception(error_);
}

bool GradientReducer::finish_waits() const {
  return in_step_ && finishing_ && done_buckets_ < buckets_.size();
}

bool GradientReducer::launchable() const {
  if (!in_step_ || next_launch_ == buckets_.size()) return false;
  if ((!options_.overlap || plain_step_) && !finishing_) return false;
  const BucketRange& next = buckets_[next_launch_];
  return next.offset + next.count <= ready_count_;
}

void GradientReducer::begin_step() {
  std::lock_guard<std::mutex> lock(mutex_);
  rethrow_error();
  CONVNET_CHECK(!in_step_, "begin_step() called again before finish()");
  in_step_ = true;
  finishing_ = false;
  plain_step_ = !stepped_ && !options_.overlap_first_step;
  stepped_ = true;
  ready_count_ = 0;
  next_launch_ = 0;
  done_buckets_ = 0;
  for (std::size_t k = 0; k < buckets_.size(); ++k) stats_.buckets[k] = {buckets_[k]};
  stats_.finish_called_s = 0;
  stats_.exposed_s = 0;
  step_begin_ = Clock::now();
}

void GradientReducer::mark_ready(std::size_t count_done) {
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    rethrow_error();
    CONVNET_CHECK(in_step_ && !finishing_, "mark_ready() outside begin_step() ... finish()");
    CONVNET_CHECK(count_done >= ready_count_ && count_done <= count_, "mark_ready(", count_done,
                  ") after mark_ready(", ready_count_, ") on a buffer of ", count_);
    ready_count_ = count_done;
    if (communicator_->size() == 1)
      record_ready_single_rank();
    else
      wake = launchable();
  }
  if (wake) wake_thread_.notify_one();
}

void GradientReducer::finish() {
  const Clock::time_point called = Clock::now();
  std::unique_lock<std::mutex> lock(mutex_);
  rethrow_error();
  CONVNET_CHECK(in_step_ && !finishing_, "finish() without begin_step()");
  finishing_ = true;
  ready_count_ = count_;
  stats_.finish_called_s = seconds_since_begin(called);
  if (communicator_->size() == 1) {
    record_ready_single_rank();
  } else {
    wake_thread_.notify_one();
    step_done_.wait(lock, [&] { return error_ || done_buckets_ == buckets_.size(); });
  }
  in_step_ = false;
  stats_.exposed_s = std::chrono::duration<double>(Clock::now() - called).count();
  rethrow_error();
}

// One rank: the average is the buffer itself, so a bucket is done once ready.
void GradientReducer::record_ready_single_rank() {
  while (launchable()) {
    BucketTiming& timing = stats_.buckets[next_launch_++];
    timing.launch_s = timing.done_s = seconds_since_begin(Clock::now());
    timing.launched_before_finish = !finishing_;
    ++done_buckets_;
  }
}

void GradientReducer::launch_ready(std::unique_lock<std::mutex>& lock,
                                   std::vector<std::size_t>& in_flight,
                                   std::vector<PendingReduce>& pending) {
  while (!error_ && !shutdown_ && launchable()) {
    const std::size_t k = next_launch_++;
    BucketTiming& timing = stats_.buckets[k];
    timing.launch_s = seconds_since_begin(Clock::now());
    timing.launched_before_finish = !finishing_;
    const BucketRange range = buckets_[k];
    lock.unlock();
    PendingReduce reduce;
    std::exception_ptr error;
    try {
      reduce =
          communicator_->allreduce_async(gradients_ + range.offset, range.count, ReduceOp::average);
    } catch (...) {
      error = std::current_exception();
    }
    lock.lock();
    if (error) {
      error_ = error;
      return;
    }
    in_flight.push_back(k);
    pending.push_back(std::move(reduce));
  }
}

void GradientReducer::run_thread() {
  std::vector<std::size_t> in_flight;  // bucket indices of the reductions in pending
  std::vector<PendingReduce> pending;
  std::vector<PendingReduce> deferred;  // counted done; polled until they end
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    launch_ready(lock, in_flight, pending);
    if (error_ && (!pending.empty() || !deferred.empty())) {
      // Nothing more will be started; let the started reductions end (their
      // handles wait) before waking finish() to rethrow. A device
      // communicator is cancelled first: kernels stuck on a dead peer would
      // never end, and the caller's stream may be waiting for them.
      std::vector<PendingReduce> abandoned = std::move(pending);
      std::vector<PendingReduce> abandoned_deferred = std::move(deferred);
      pending.clear();
      deferred.clear();
      in_flight.clear();
      lock.unlock();
      try {
        communicator_->cancel();
      } catch (const std::exception& e) {
        CONVNET_WARN_IF_NOT(false, "cancelling the gradient communicator failed: ", e.what());
      }
      abandoned.clear();
      abandoned_deferred.clear();
      lock.lock();
    }
    if (error_) step_done_.notify_all();
    if (pending.empty() && deferred.empty()) {
      if (shutdown_) return;
      wake_thread_.wait(lock, [&] { return shutdown_ || (!error_ && launchable()); });
      continue;
    }
    const std::size_t before_pending = pending.size(), before_deferred = deferred.size();
    drive(lock, in_flight, pending, deferred);
    const bool progressed = pending.size() < before_pending || deferred.size() < before_deferred;
    if (!progressed && !finish_waits() && !shutdown_ && !error_) {
      // Only deferred reductions left: the caller is not waiting for them,
      // polling them is for errors and clean-up, so less often.
      const auto interval = pending.empty()
                                ? std::max<std::chrono::microseconds>(options_.poll_interval,
                                                                      std::chrono::milliseconds(1))
                                : options_.poll_interval;
      wake_thread_.wait_for(lock, interval,
                            [&] { return shutdown_ || finish_waits() || launchable(); });
    }
  }
}

void GradientReducer::drive(std::unique_lock<std::mutex>& lock, std::vector<std::size_t>& in_flight,
                            std::vector<PendingReduce>& pending,
                            std::vector<PendingReduce>& deferred) {
  // During backward test everything in flight. Once the caller waits in
  // finish() every bucket has been started (finish() marked all ready):
  // defer what can be deferred (not in a plain first step), and block in the
  // oldest of the rest (a host reduction), there is nothing else to do.
  // Shutting down blocks in whatever is left.
  const bool caller_waits = finish_waits();
  const bool may_defer = !plain_step_;
  const bool shutting_down = shutdown_;
  const bool blocking = caller_waits || shutting_down;
  lock.unlock();
  std::vector<char> complete(pending.size(), 0), now_deferred(pending.size(), 0);
  std::vector<char> deferred_complete(deferred.size(), 0);
  std::exception_ptr error;
  try {
    if (caller_waits && may_defer && !shutting_down)
      for (std::size_t i = 0; i < pending.size(); ++i)
        complete[i] = now_deferred[i] = pending[i].defer() ? 1 : 0;
    if (blocking && !pending.empty() && !complete[0]) {
      pending.front().wait();
      complete[0] = 1;
    }
    if (shutting_down && pending.empty() && !deferred.empty()) {
      deferred.front().wait();
      deferred_complete[0] = 1;
    }
    for (std::size_t i = 0; i < pending.size(); ++i)
      if (!complete[i]) complete[i] = pending[i].test() ? 1 : 0;
    for (std::size_t i = 0; i < deferred.size(); ++i)
      if (!deferred_complete[i]) deferred_complete[i] = deferred[i].test() ? 1 : 0;
  } catch (...) {
    error = std::current_exception();
  }
  const Clock::time_point now = Clock::now();
  lock.lock();

  if (error) error_ = error;
  std::size_t kept = 0;
  for (std::size_t i = 0; i < deferred.size(); ++i)
    if (!deferred_complete[i]) deferred[kept++] = std::move(deferred[i]);
  deferred.resize(kept);
  kept = 0;
  for (std::size_t i = 0; i < pending.size(); ++i) {
    if (complete[i]) {
      BucketTiming& timing = stats_.buckets[in_flight[i]];
      timing.done_s = seconds_since_begin(now);
      timing.deferred = now_deferred[i] != 0;
      ++done_buckets_;
      if (now_deferred[i]) deferred.push_back(std::move(pending[i]));
    } else {
      in_flight[kept] = in_flight[i];
      pending[kept] = std::move(pending[i]);
      ++kept;
    }
  }
  in_flight.resize(kept);
  pending.resize(kept);
  if (done_buckets_ == buckets_.size()) step_done_.notify_all();
}

}  // namespace convnet
