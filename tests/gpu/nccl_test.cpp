// The NCCL communicator on one GPU (one rank: a machine with one GPU cannot
// run two NCCL ranks on the same device): known buffers reduced in place,
// synchronously and asynchronously, host buffers falling through to the host
// communicator, and a data-parallel step whose gradient buckets are reduced
// with and without overlapping backward giving the same weights.
#include "comm/gradient_reducer.h"
#include "comm/nccl_communicator.h"
#include "comm/single_process_communicator.h"
#include "layers/sgd.h"
#include "layers/softmax_cross_entropy.h"
#include "models/zoo.h"
#include "tests/gpu/gpu_test_util.h"

namespace convnet::testing {
namespace {

class Nccl : public GpuTest {
 protected:
  // Three SGD steps of resnet20 on the GPU with the gradient reducer over
  // NCCL (small buckets, so there are many); returns the weights.
  std::vector<float> train_with_reducer(bool overlap) {
    ParamStore host_store, store;
    const Shape input{8, 3, 32, 32};
    auto net = build_model(gpu(), {.name = "resnet20"}, store, input);
    net->plan();
    auto host_net = build_model(cpu(), {.name = "resnet20"}, host_store, input);
    host_net->plan();
    initialize_parameters(host_store, 11);
    copy_values(store, host_store);
    auto loss = SoftmaxCrossEntropy::create(gpu(), "loss", {}, net->output().shape());
    Sgd sgd(gpu(), {.momentum = 0.9}, store.decay_segments(false), store.num_parameters());
    SingleProcessCommunicator host;
    auto nccl = make_nccl_communicator(host, 0, stream());
    GradientReducer reducer(*nccl, store.flat_grads().data<float>(), store.num_parameters(),
                            {.bucket_bytes = 64 << 10, .overlap = overlap});
    EXPECT_GT(reducer.buckets().size(), 3u);
    std::mt19937 rng(5);
    std::normal_distribution<float> pixel;
    Tensor batch = Tensor::empty(input, cpu().allocator());
    for (int step = 0; step < 3; ++step) {
      for (int64_t i = 0; i < batch.numel(); ++i) batch.data<float>()[i] = pixel(rng);
      cuda::copy(net->input(), batch, stream());
      store.zero_grads();
      net->forward(Mode::training);
      loss->forward(net->output(), {0, 1, 2, 3, 4, 5, 6, 7});
      loss->backward(net->output_grad());
      reducer.begin_step();
      net->backward([&](int64_t ready) { reducer.mark_ready(static_cast<std::size_t>(ready)); });
      reducer.finish();
      sgd.step(store.flat_params(), store.flat_grads(), 0.05);
    }
    return download(store.flat_params()).to_vector();
  }
};

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
  double metric = 3.5;  // host data goes through the host communicator
  nccl->allreduce(&metric, 1, ReduceOp::sum);
  EXPECT_EQ(metric, 3.5);
  nccl->barrier();
}

TEST_F(Nccl, OverlappedReductionGivesTheSameWeights) {
  const std::vector<float> overlapped = train_with_reducer(true);
  const std::vector<float> serial = train_with_reducer(false);
  EXPECT_EQ(overlapped, serial);
}

}  // namespace
}  // namespace convnet::testing
