// GradientReducer in one process: bucket splitting, the one-rank path, and the
// communication thread driven by a fake two-rank communicator. The real MPI
// reductions are checked by mpi_comm_check under mpirun (ctest comm.mpi_np*).
#include "comm/gradient_reducer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <numeric>
#include <thread>
#include <vector>

#include "comm/single_process_communicator.h"
#include "core/error.h"

namespace convnet {
namespace {

using std::chrono::milliseconds;

TEST(SplitBuckets, LastBucketTakesTheRemainder) {
  const std::vector<BucketRange> buckets = split_buckets(10, 4 * sizeof(float));
  ASSERT_EQ(buckets.size(), 3u);
  EXPECT_EQ(buckets[0].offset, 0u);
  EXPECT_EQ(buckets[0].count, 4u);
  EXPECT_EQ(buckets[1].offset, 4u);
  EXPECT_EQ(buckets[1].count, 4u);
  EXPECT_EQ(buckets[2].offset, 8u);
  EXPECT_EQ(buckets[2].count, 2u);
}

TEST(SplitBuckets, EdgeCases) {
  EXPECT_EQ(split_buckets(8, 16).size(), 2u) << "an exact multiple has no short bucket";
  const std::vector<BucketRange> one = split_buckets(5, std::size_t{25} << 20);
  ASSERT_EQ(one.size(), 1u) << "a bucket larger than the buffer holds all of it";
  EXPECT_EQ(one[0].count, 5u);
  EXPECT_TRUE(split_buckets(0, 1024).empty());
  EXPECT_EQ(split_buckets(3, 7).size(), 3u) << "7 bytes hold one float";
  EXPECT_THROW(split_buckets(3, 3), Error);
  EXPECT_THROW(split_buckets(3, 0), Error);
}

// ---- One rank -----------------------------------------------------------------

TEST(GradientReducerOneRank, LeavesTheBufferAloneAndRecordsBuckets) {
  SingleProcessCommunicator comm;
  std::vector<float> grads(10);
  std::iota(grads.begin(), grads.end(), 0.0f);
  const std::vector<float> before = grads;
  GradientReducer reducer(comm, grads.data(), grads.size(), {.bucket_bytes = 4 * sizeof(float)});
  ASSERT_EQ(reducer.buckets().size(), 3u);

  reducer.begin_step();
  reducer.mark_ready(3);  // no bucket complete yet
  reducer.mark_ready(4);  // bucket 0
  reducer.mark_ready(9);  // bucket 1
  reducer.finish();       // bucket 2
  EXPECT_EQ(grads, before);
  const ReduceStepStats& stats = reducer.last_step();
  ASSERT_EQ(stats.buckets.size(), 3u);
  EXPECT_TRUE(stats.buckets[0].launched_before_finish);
  EXPECT_TRUE(stats.buckets[1].launched_before_finish);
  EXPECT_FALSE(stats.buckets[2].launched_before_finish);
  EXPECT_EQ(stats.launched_before_finish(), 2u);
  EXPECT_EQ(stats.buckets[2].range.offset, 8u);
  EXPECT_LE(stats.buckets[0].launch_s, stats.buckets[1].launch_s);
  EXPECT_GE(stats.exposed_s, 0.0);

  // finish() alone reduces every bucket (the no-overlap mode).
  reducer.begin_step();
  reducer.finish();
  EXPECT_EQ(reducer.last_step().launched_before_finish(), 0u);
  EXPECT_EQ(grads, before);
}

TEST(GradientReducerOneRank, WithoutOverlapNothingStartsBeforeFinish) {
  SingleProcessCommunicator comm;
  std::vector<float> grads(10, 1.0f);
  GradientReducer reducer(comm, grads.data(), grads.size(),
                          {.bucket_bytes = 4 * sizeof(float), .overlap = false});
  reducer.begin_step();
  reducer.mark_ready(10);
  reducer.finish();
  EXPECT_EQ(reducer.last_step().launched_before_finish(), 0u);
  EXPECT_EQ(reducer.last_step().buckets.size(), 3u);
}

TEST(GradientReducerOneRank, EmptyBufferHasNoBuckets) {
  SingleProcessCommunicator comm;
  GradientReducer reducer(comm, nullptr, 0);
  EXPECT_TRUE(reducer.buckets().empty());
  reducer.begin_step();
  reducer.mark_ready(0);
  reducer.finish();
  EXPECT_TRUE(reducer.last_step().buckets.empty());
}

TEST(GradientReducerOneRank, MisuseThrows) {
  SingleProcessCommunicator comm;
  std::vector<float> grads(10);
  EXPECT_THROW(GradientReducer(comm, nullptr, 10), Error);
  EXPECT_THROW(GradientReducer(comm, grads.data(), 10, {.bucket_bytes = 2}), Error);
  GradientReducer reducer(comm, grads.data(), grads.size(), {.bucket_bytes = 16});
  EXPECT_THROW(reducer.mark_ready(1), Error) << "outside a step";
  EXPECT_THROW(reducer.finish(), Error) << "finish() without begin_step()";
  reducer.begin_step();
  EXPECT_THROW(reducer.begin_step(), Error) << "the step is not finished";
  reducer.mark_ready(5);
  EXPECT_THROW(reducer.mark_ready(4), Error) << "count_done decreased";
  EXPECT_THROW(reducer.mark_ready(11), Error) << "beyond the buffer";
  reducer.finish();
  EXPECT_THROW(reducer.finish(), Error) << "finished twice";
}

// ---- Two ranks, faked -------------------------------------------------------------

// What the fake communicators of one reducer saw.
struct FakeLog {
  std::mutex mutex;
  std::vector<std::size_t> launch_counts;  // element count of each allreduce_async, in order
  std::vector<std::thread::id> launch_threads;
  std::size_t fail_at = SIZE_MAX;  // allreduce_async number fail_at throws
  // Device-like reductions (as NCCL's): defer() succeeds, and they complete
  // only once `device_done` is set, as a GPU that has not got there yet.
  bool deferrable = false;
  std::atomic<bool> device_done{true};
  std::atomic<bool> device_fails{false};  // test() of a reduction throws, as a dead peer
  std::atomic<int> deferred{0}, completed{0};
  std::atomic<int> cancelled{0};  // Communicator::cancel() calls: they release stuck reductions
};

// A reduction with a peer rank whose gradients are all 1: the average is
// (x + 1) / 2, exact in float for the small integers used here. Completes on
// the second test() or on wait().
class FakeReduce final : public PendingReduce::Impl {
 public:
  FakeReduce(float* data, std::size_t count, FakeLog& log)
      : data_(data), count_(count), log_(log) {}
  bool test() override {
    CONVNET_CHECK(!log_.device_fails, "injected device failure");
    if (++tests_ < 2 || !log_.device_done) return false;
    complete();
    return true;
  }
  void wait() override {
    while (!log_.device_done && log_.cancelled == 0) std::this_thread::sleep_for(milliseconds(1));
    complete();
  }
  bool defer() override {
    if (log_.deferrable) ++log_.deferred;
    return log_.deferrable;
  }

 private:
  void complete() {
    for (std::size_t i = 0; i < count_; ++i) data_[i] = (data_[i] + 1.0f) / 2.0f;
    ++log_.completed;
  }
  float* data_;
  std::size_t count_;
  FakeLog& log_;
  int tests_ = 0;
};

// Rank 0 of two; only allreduce_async and duplicate are used by the reducer.
class FakeTwoRanks final : public Communicator {
 public:
  explicit FakeTwoRanks(std::shared_ptr<FakeLog> log)
      : Communicator(0, 2, 0, 2), log_(std::move(log)) {}
  ThreadSupport thread_support() const override { return ThreadSupport::multiple; }
  std::string describe() const override { return "fake: rank 0 of 2"; }

 protected:
  void barrier_impl() override { unused(); }
  void broadcast_impl(void*, std::size_t, int) override { unused(); }
  void allreduce_impl(float*, std::size_t, ReduceOp) override { unused(); }
  void allreduce_impl(double*, std::size_t, ReduceOp) override { unused(); }
  void allreduce_impl(int64_t*, std::size_t) override { unused(); }
  int64_t allreduce_max_impl(int64_t) override { unused(); }
  [[noreturn]] void abort_impl(int) override { unused(); }
  void cancel_impl() override { ++log_->cancelled; }
  std::unique_ptr<Communicator> duplicate_impl() override {
    return std::make_unique<FakeTwoRanks>(log_);
  }
  PendingReduce allreduce_async_impl(float* data, std::size_t count, ReduceOp op) override {
    EXPECT_EQ(op, ReduceOp::average);
    std::lock_guard<std::mutex> lock(log_->mutex);
    CONVNET_CHECK(log_->launch_counts.size() != log_->fail_at, "injected failure");
    log_->launch_counts.push_back(count);
    log_->launch_threads.push_back(std::this_thread::get_id());
    return PendingReduce(std::make_unique<FakeReduce>(data, count, *log_));
  }

 private:
  [[noreturn]] static void unused() { throw Error("not used by GradientReducer"); }
  std::shared_ptr<FakeLog> log_;
};

std::vector<float> small_integers(std::size_t count) {
  std::vector<float> values(count);
  for (std::size_t i = 0; i < count; ++i) values[i] = static_cast<float>(i % 7);
  return values;
}

// Every element averaged exactly once with the fake peer.
std::vector<float> averaged(const std::vector<float>& values) {
  std::vector<float> result = values;
  for (float& v : result) v = (v + 1.0f) / 2.0f;
  return result;
}

TEST(GradientReducerThread, AveragesEveryElementOnceFromItsOwnThread) {
  auto log = std::make_shared<FakeLog>();
  FakeTwoRanks comm(log);
  std::vector<float> grads = small_integers(1003);
  const std::vector<float> expected = averaged(grads);
  GradientReducer reducer(comm, grads.data(), grads.size(), {.bucket_bytes = 100 * sizeof(float)});
  ASSERT_EQ(reducer.buckets().size(), 11u);
  reducer.begin_step();
  for (std::size_t done = 0; done <= grads.size(); done += 97) reducer.mark_ready(done);
  reducer.finish();
  EXPECT_EQ(grads, expected);

  std::lock_guard<std::mutex> lock(log->mutex);
  ASSERT_EQ(log->launch_counts.size(), 11u);
  for (std::size_t k = 0; k < 10; ++k) EXPECT_EQ(log->launch_counts[k], 100u) << "bucket " << k;
  EXPECT_EQ(log->launch_counts[10], 3u);
  for (const std::thread::id& id : log->launch_threads)
    EXPECT_NE(id, std::this_thread::get_id()) << "the communication thread launches";
}

// A backward that finishes buckets of 100 gradients up to `last` 20 ms
// apart, then takes 20 ms more before the reducer's finish().
void slow_backward(GradientReducer& reducer, std::size_t last) {
  for (std::size_t done = 100; done <= last; done += 100) {
    std::this_thread::sleep_for(milliseconds(20));  // "backward" of the next layers
    reducer.mark_ready(done);
  }
  std::this_thread::sleep_for(milliseconds(20));
}

TEST(GradientReducerThread, BucketsStartDuringBackwardOnlyWithOverlap) {
  for (const bool overlap : {true, false}) {
    SCOPED_TRACE(overlap ? "overlap" : "no overlap");
    auto log = std::make_shared<FakeLog>();
    FakeTwoRanks comm(log);
    std::vector<float> grads = small_integers(400);
    const std::vector<float> expected = averaged(grads);
    GradientReducer reducer(comm, grads.data(), grads.size(),
                            {.bucket_bytes = 100 * sizeof(float), .overlap = overlap});
    reducer.begin_step();
    slow_backward(reducer, 300);
    reducer.finish();
    EXPECT_EQ(grads, expected);
    const ReduceStepStats& stats = reducer.last_step();
    if (overlap) {
      // 20 ms is ample for the thread to wake up (microseconds) and to test
      // the fake twice (50 us apart); only a very loaded machine could miss it.
      EXPECT_EQ(stats.launched_before_finish(), 3u);
      EXPECT_GE(stats.done_before_finish(), 3u);
      EXPECT_LT(stats.buckets[0].launch_s, stats.buckets[1].launch_s);
    } else {
      EXPECT_EQ(stats.launched_before_finish(), 0u);
    }
    EXPECT_FALSE(stats.buckets[3].launched_before_finish);
    for (const BucketTiming& bucket : stats.buckets) EXPECT_LE(bucket.launch_s, bucket.done_s);
  }
}

TEST(GradientReducerThread, ManyStepsReuseTheReducer) {
  auto log = std::make_shared<FakeLog>();
  FakeTwoRanks comm(log);
  std::vector<float> grads(64);
  GradientReducer reducer(comm, grads.data(), grads.size(), {.bucket_bytes = 40});
  for (int step = 0; step < 50; ++step) {
    const std::vector<float> values = small_integers(grads.size());
    std::copy(values.begin(), values.end(), grads.begin());  // in place: the reducer holds it
    reducer.begin_step();
    if (step % 2 == 0) reducer.mark_ready(static_cast<std::size_t>(step));
    reducer.finish();
    ASSERT_EQ(grads, averaged(small_integers(grads.size()))) << "step " << step;
  }
}

TEST(GradientReducerThread, AFailedReductionIsRethrownByFinishAndAfterwards) {
  auto log = std::make_shared<FakeLog>();
  log->fail_at = 2;
  FakeTwoRanks comm(log);
  std::vector<float> grads(100);
  GradientReducer reducer(comm, grads.data(), grads.size(), {.bucket_bytes = 40});
  reducer.begin_step();
  reducer.mark_ready(50);
  try {
    reducer.finish();
    FAIL() << "finish() returned after a failed reduction";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("injected failure"), std::string::npos) << e.what();
  }
  EXPECT_THROW(reducer.begin_step(), Error);
}

// Device reductions: finish() returns once every bucket is started and
// deferred (the compute stream would wait for them), not when they end; the
// thread then polls them until they do.
TEST(GradientReducerThread, DeviceReductionsAreDeferredNotWaitedFor) {
  auto log = std::make_shared<FakeLog>();
  log->deferrable = true;
  FakeTwoRanks comm(log);
  std::vector<float> grads = small_integers(100);
  const std::vector<float> expected = averaged(grads);
  {
    GradientReducer reducer(comm, grads.data(), grads.size(), {.bucket_bytes = 40 * sizeof(float)});
    log->device_done = false;  // the "GPU" is busy: nothing completes
    reducer.begin_step();
    reducer.mark_ready(40);
    reducer.finish();  // would hang here if it waited for the reductions
    EXPECT_EQ(log->deferred.load(), 3);
    EXPECT_EQ(log->completed.load(), 0);
    for (const BucketTiming& bucket : reducer.last_step().buckets) EXPECT_TRUE(bucket.deferred);
    log->device_done = true;
    for (int i = 0; i < 5000 && log->completed < 3; ++i)
      std::this_thread::sleep_for(milliseconds(1));
    EXPECT_EQ(log->completed.load(), 3) << "the thread polls deferred reductions to their end";
    EXPECT_EQ(grads, expected);
  }
  // Host reductions are still waited for.
  log->deferrable = false;
  log->device_done = true;
  std::vector<float> host = small_integers(100);
  GradientReducer reducer(comm, host.data(), host.size(), {.bucket_bytes = 40 * sizeof(float)});
  reducer.begin_step();
  reducer.finish();
  EXPECT_EQ(host, averaged(small_integers(100)));
  for (const BucketTiming& bucket : reducer.last_step().buckets) EXPECT_FALSE(bucket.deferred);
}

// overlap_first_step = false (the GPU trainer): step 1 starts every bucket
// at finish() and waits for them on the host; step 2 overlaps and defers.
TEST(GradientReducerThread, APlainFirstStepNeitherOverlapsNorDefers) {
  auto log = std::make_shared<FakeLog>();
  log->deferrable = true;
  FakeTwoRanks comm(log);
  std::vector<float> grads(300);
  GradientReducer reducer(comm, grads.data(), grads.size(),
                          {.bucket_bytes = 100 * sizeof(float), .overlap_first_step = false});
  for (int step = 1; step <= 2; ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    const std::vector<float> values = small_integers(grads.size());
    std::copy(values.begin(), values.end(), grads.begin());
    reducer.begin_step();
    slow_backward(reducer, 200);
    reducer.finish();
    const ReduceStepStats& stats = reducer.last_step();
    if (step == 1) {
      EXPECT_EQ(grads, averaged(values)) << "waited for on the host";
      EXPECT_EQ(stats.launched_before_finish(), 0u);
      for (const BucketTiming& bucket : stats.buckets) EXPECT_FALSE(bucket.deferred);
    } else {
      EXPECT_EQ(stats.launched_before_finish(), 2u);  // as BucketsStartDuringBackward...
      EXPECT_TRUE(stats.buckets[2].deferred);         // started by finish()
      for (int i = 0; i < 5000 && log->completed < 6; ++i)
        std::this_thread::sleep_for(milliseconds(1));
      EXPECT_EQ(grads, averaged(values));
    }
  }
}

TEST(GradientReducerThread, ADeferredReductionThatFailsIsRethrownByTheNextStep) {
  auto log = std::make_shared<FakeLog>();
  log->deferrable = true;
  FakeTwoRanks comm(log);
  std::vector<float> grads(100);
  GradientReducer reducer(comm, grads.data(), grads.size(), {.bucket_bytes = 40 * sizeof(float)});
  log->device_done = false;
  reducer.begin_step();
  reducer.finish();
  log->device_fails = true;  // as an NCCL peer that died after the step was enqueued
  bool thrown = false;
  for (int i = 0; i < 5000 && !thrown; ++i) {
    try {
      reducer.begin_step();
      reducer.finish();
      std::this_thread::sleep_for(milliseconds(1));
    } catch (const Error& e) {
      thrown = true;
      EXPECT_NE(std::string(e.what()).find("injected device failure"), std::string::npos)
          << e.what();
    }
  }
  EXPECT_TRUE(thrown);
  // The thread cancels right after recording the error the caller rethrew.
  for (int i = 0; i < 5000 && log->cancelled == 0; ++i)
    std::this_thread::sleep_for(milliseconds(1));
  EXPECT_EQ(log->cancelled.load(), 1) << "cancelled, so the stuck reductions end";
}

TEST(GradientReducerThread, DestroyedInTheMiddleOfAStepDoesNotHang) {
  auto log = std::make_shared<FakeLog>();
  FakeTwoRanks comm(log);
  std::vector<float> grads(100);
  {
    GradientReducer reducer(comm, grads.data(), grads.size(), {.bucket_bytes = 40});
    reducer.begin_step();
    reducer.mark_ready(60);
  }  // as when backward throws: started reductions end, nothing more starts
  std::lock_guard<std::mutex> lock(log->mutex);
  EXPECT_LE(log->launch_counts.size(), 6u);
}

}  // namespace
}  // namespace convnet
