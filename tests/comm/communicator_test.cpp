// The Communicator interface over a world of one rank. The multi-rank
// behaviour (real MPI reductions) is checked by mpi_comm_check under mpirun
// (ctest comm.mpi_np2, comm.mpi_np3).
#include "comm/communicator.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "comm/mpi_communicator.h"
#include "comm/single_process_communicator.h"
#include "core/error.h"

namespace convnet {
namespace {

TEST(SingleProcessCommunicator, IsAWorldOfOne) {
  SingleProcessCommunicator comm;
  EXPECT_EQ(comm.rank(), 0);
  EXPECT_EQ(comm.size(), 1);
  EXPECT_EQ(comm.local_rank(), 0);
  EXPECT_EQ(comm.local_size(), 1);
  EXPECT_EQ(comm.thread_support(), ThreadSupport::multiple);
  EXPECT_EQ(comm.describe(), "single process: rank 0 of 1");
  comm.barrier();
}

// The sum and the average over one rank are the rank's own values, exactly.
TEST(SingleProcessCommunicator, ReductionsAreTheIdentity) {
  SingleProcessCommunicator comm;
  std::vector<float> f = {1.5f, -2.0f, 3.25f};
  comm.allreduce(f.data(), f.size(), ReduceOp::sum);
  EXPECT_EQ(f, (std::vector<float>{1.5f, -2.0f, 3.25f}));
  comm.allreduce(f.data(), f.size(), ReduceOp::average);
  EXPECT_EQ(f, (std::vector<float>{1.5f, -2.0f, 3.25f}));

  std::vector<double> d = {0.1, 1e300};
  comm.allreduce(d.data(), d.size(), ReduceOp::average);
  EXPECT_EQ(d, (std::vector<double>{0.1, 1e300}));

  std::vector<int64_t> counts = {int64_t{1} << 40, -7};
  comm.allreduce(counts.data(), counts.size());
  EXPECT_EQ(counts, (std::vector<int64_t>{int64_t{1} << 40, -7}));

  EXPECT_EQ(comm.allreduce_max(-5), -5);
  EXPECT_TRUE(comm.any(true));
  EXPECT_FALSE(comm.any(false));

  // Zero elements, even at null, are fine.
  comm.allreduce(static_cast<float*>(nullptr), 0, ReduceOp::sum);
}

TEST(SingleProcessCommunicator, AsyncReduceIsCompleteAtOnce) {
  SingleProcessCommunicator comm;
  std::vector<float> f = {4.0f, 5.0f};
  PendingReduce pending = comm.allreduce_async(f.data(), f.size(), ReduceOp::average);
  EXPECT_TRUE(pending.done());
  EXPECT_TRUE(pending.test());
  pending.wait();
  EXPECT_EQ(f, (std::vector<float>{4.0f, 5.0f}));
}

TEST(SingleProcessCommunicator, BroadcastFromRankZeroKeepsTheData) {
  SingleProcessCommunicator comm;
  int64_t value = 42;
  comm.broadcast(value, 0);
  EXPECT_EQ(value, 42);
  std::string text = "resnet50";
  comm.broadcast(text, 0);
  EXPECT_EQ(text, "resnet50");
  EXPECT_THROW(comm.broadcast(value, 1), Error) << "rank 1 does not exist";
  EXPECT_THROW(comm.broadcast(value, -1), Error);
}

TEST(SingleProcessCommunicator, NullDataWithElementsThrows) {
  SingleProcessCommunicator comm;
  EXPECT_THROW(comm.allreduce(static_cast<float*>(nullptr), 3, ReduceOp::sum), Error);
  EXPECT_THROW(comm.allreduce(static_cast<int64_t*>(nullptr), 1), Error);
  EXPECT_THROW(comm.allreduce_async(nullptr, 2, ReduceOp::sum), Error);
  EXPECT_THROW(comm.broadcast(nullptr, 8, 0), Error);
}

TEST(SingleProcessCommunicator, DuplicateIsAnotherWorldOfOne) {
  SingleProcessCommunicator comm;
  std::unique_ptr<Communicator> copy = comm.duplicate();
  ASSERT_NE(copy, nullptr);
  EXPECT_EQ(copy->size(), 1);
  EXPECT_EQ(copy->rank(), 0);
}

// A handle whose reduction completes on the n-th test(); counts waits.
class CountdownReduce final : public PendingReduce::Impl {
 public:
  CountdownReduce(int tests_left, int& waits) : tests_left_(tests_left), waits_(waits) {}
  bool test() override { return --tests_left_ <= 0; }
  void wait() override { ++waits_; }

 private:
  int tests_left_;
  int& waits_;
};

TEST(PendingReduce, TestCompletesOnceAndTheDestructorWaitsOnlyWhenPending) {
  int waits = 0;
  {
    PendingReduce pending(std::make_unique<CountdownReduce>(2, waits));
    EXPECT_FALSE(pending.done());
    EXPECT_FALSE(pending.test());
    EXPECT_TRUE(pending.test());
    EXPECT_TRUE(pending.done());
    EXPECT_TRUE(pending.test()) << "stays complete";
  }
  EXPECT_EQ(waits, 0) << "a completed reduction is not waited for again";
  { PendingReduce pending(std::make_unique<CountdownReduce>(100, waits)); }
  EXPECT_EQ(waits, 1) << "the destructor waits for a reduction in flight";
}

TEST(PendingReduce, MovingTransfersTheReductionAndAssignmentWaitsForTheOldOne) {
  int waits = 0;
  PendingReduce a(std::make_unique<CountdownReduce>(100, waits));
  PendingReduce b = std::move(a);
  EXPECT_TRUE(a.done());  // NOLINT(bugprone-use-after-move): moved-from is complete
  EXPECT_FALSE(b.done());
  b = PendingReduce(std::make_unique<CountdownReduce>(100, waits));
  EXPECT_EQ(waits, 1) << "assignment waited for the reduction it replaced";
  b.wait();
  EXPECT_EQ(waits, 2);
  EXPECT_TRUE(b.done());
}

TEST(MakeCommunicator, OutsideALauncherIsSingleProcess) {
  if (launcher_rank() >= 0) GTEST_SKIP() << "running under a parallel launcher";
  std::unique_ptr<Communicator> comm = make_communicator();
  EXPECT_EQ(comm->size(), 1);
  EXPECT_EQ(comm->describe(), "single process: rank 0 of 1");
}

TEST(ReduceOp, Names) {
  EXPECT_EQ(to_string(ReduceOp::sum), "sum");
  EXPECT_EQ(to_string(ReduceOp::average), "average");
  EXPECT_EQ(to_string(ThreadSupport::serialized), "serialized");
}

}  // namespace
}  // namespace convnet
