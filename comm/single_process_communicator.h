// SingleProcessCommunicator: a world of one rank (rank 0 of 1, one per node).
//
// What a plain `convnet train` gets outside mpirun/srun, so it never needs MPI.
// Every reduction over one rank is the identity (the sum of one value is the
// value, the average of one value is the value), so reductions and broadcasts
// return at once without touching the data; barrier() is a no-op and abort()
// ends the process.
#pragma once

#include "comm/communicator.h"

namespace convnet {

class SingleProcessCommunicator final : public Communicator {
 public:
  SingleProcessCommunicator() : Communicator(0, 1, 0, 1) {}

  ThreadSupport thread_support() const override { return ThreadSupport::multiple; }
  std::string describe() const override { return "single process: rank 0 of 1"; }

 protected:
  void barrier_impl() override {}
  void broadcast_impl(void* data, std::size_t bytes, int root) override {}
  void allreduce_impl(float* data, std::size_t count, ReduceOp op) override {}
  void allreduce_impl(double* data, std::size_t count, ReduceOp op) override {}
  void allreduce_impl(int64_t* data, std::size_t count) override {}
  PendingReduce allreduce_async_impl(float* data, std::size_t count, ReduceOp op) override {
    return PendingReduce();
  }
  int64_t allreduce_max_impl(int64_t value) override { return value; }
  std::unique_ptr<Communicator> duplicate_impl() override;
  [[noreturn]] void abort_impl(int exit_code) override;
};

}  // namespace convnet
