// The NCCL communicator on one GPU (one rank: a machine with one GPU cannot
// run two NCCL ranks on the same device): known buffers reduced in place,
// synchronously and asynchronously, and host buffers falling through to the
// host communicator. (With one rank the GradientReducer never calls the
// communicator, so overlap over NCCL needs a machine with two GPUs.)
#include <thread>

#include "comm/gradient_reducer.h"
#include "comm/nccl_communicator.h"
#include "comm/single_process_communicator.h"
#include "core/error.h"
#include "layers/sgd.h"
#include "layers/softmax_cross_entropy.h"
#include "models/zoo.h"
#include "tests/gpu/gpu_test_util.h"

namespace convnet::testing {
namespace {

class Nccl : public GpuTest {};

TEST_F(Nccl, AllreduceOfAKnownBuffer) {
  SingleProcessCommunicator host;
  auto nccl = make_nccl_communicator(host, 0, stream());
  EXPECT_EQ(nccl->size(), 1);
  EXPECT_NE(nccl->describe().find("nccl"), std::string::npos);
  Tensor values = Tensor::empty(Shape{1000}, cpu().allocator());
  for (int i = 0; i < 1000; ++i) values.data<float>()[i] = 0.25f * static_cast<float>(i - 500);
  Tensor device = upload(values);
  nccl->allreduce(device.data<float>(), 1000, ReduceOp::sum);
  EXPECT_TRUE(close(device, values, 0.0, 0.0));
  PendingReduce pending = nccl->allreduce_async(device.data<float>(), 1000, ReduceOp::average);
  pending.wait();
  EXPECT_TRUE(pending.done());
  EXPECT_TRUE(close(device, values, 0.0, 0.0));
  // defer(): the compute stream waits for the reduction, the host does not;
  // the handle still reports its end to test().
  PendingReduce deferred = nccl->allreduce_async(device.data<float>(), 1000, ReduceOp::average);
  EXPECT_TRUE(deferred.defer());
  EXPECT_TRUE(close(device, values, 0.0, 0.0));  // read on the compute stream
  for (int i = 0; i < 100000 && !deferred.test(); ++i) std::this_thread::yield();
  EXPECT_TRUE(deferred.done());
  double metric = 3.5;  // host data goes through the host communicator
  nccl->allreduce(&metric, 1, ReduceOp::sum);
  EXPECT_EQ(metric, 3.5);
  nccl->barrier();
  // cancel(): the communicator is aborted (as after a dead peer) without
  // ending the process; using it again is a clear error.
  nccl->cancel();
  try {
    nccl->allreduce_async(device.data<float>(), 1000, ReduceOp::average);
    ADD_FAILURE() << "an allreduce on a cancelled communicator";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("aborted"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace convnet::testing
