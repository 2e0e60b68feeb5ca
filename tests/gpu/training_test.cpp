// Whole networks on the GPU against the CPU backend: identical initial
// weights and batches, five SGD steps, then the per-step losses and the final
// weights and BN statistics compared; and the memory-efficient DenseNet
// against the naive one on the GPU.
//
// Tolerance: after several steps the two backends' rounding differences
// (different convolution algorithms and reduction orders, ~1e-6 relative per
// layer) are carried through BN's batch statistics and the updates, so losses
// are compared to 1e-3 relative and weights to 1e-3 of the largest weight;
// a wrong kernel or a missed gradient gives errors of order 1e-1.
#include <functional>

#include "comm/single_process_communicator.h"
#include "layers/sgd.h"
#include "layers/softmax_cross_entropy.h"
#include "models/zoo.h"
#include "tests/gpu/gpu_test_util.h"
#include "trainer/train_step.h"

namespace convnet::testing {
namespace {

struct Replica {
  ParamStore store;
  std::unique_ptr<Net> net;
  std::unique_ptr<SoftmaxCrossEntropy> loss;
  std::unique_ptr<Sgd> sgd;
};

// The trainer's own step (trainer/train_step.h: input feed, loss, backward
// reporting ready gradients, SGD) over one replica, on one rank.
struct ReplicaStep {
  ReplicaStep(Replica& r, Context& context, std::function<void(Batch*)> next_batch, bool fp16)
      : reducer(communicator, r.store.flat_grads().data<float>(), r.store.flat_size(),
                {.overlap_first_step = false}),
        scaler(fp16),
        step({.context = context,
              .net = *r.net,
              .loss = *r.loss,
              .store = r.store,
              .sgd = *r.sgd,
              .reducer = reducer,
              .communicator = communicator,
              .scaler = scaler,
              .next_batch = std::move(next_batch)}) {}
  SingleProcessCommunicator communicator;
  GradientReducer reducer;
  LossScaler scaler;
  TrainStep step;
};

class GpuTraining : public GpuTest {
 protected:
  void build(Replica& r, Context& context, const ModelSpec& spec, const Shape& input) {
    r.net = build_model(context, spec, r.store, input);
    r.loss = SoftmaxCrossEntropy::create(context, "loss", {}, r.net->output().shape());
    SgdOptions o;
    o.momentum = 0.9;
    o.weight_decay = 5e-4;
    r.sgd = std::make_unique<Sgd>(context, o, r.store.decay_segments(DecayScope::weights_only),
                                  r.store.flat_size());
  }

  // Five steps of the trainer's own TrainStep (input feed, loss, backward,
  // SGD) on one replica over the given host batches; each step's mean loss.
  std::vector<double> train_steps(Replica& r, Context& context, const std::vector<Tensor>& batches,
                                  const std::vector<std::vector<int64_t>>& labels) {
    std::size_t next = 0;
    const Layout layout = r.net->input().layout();
    ReplicaStep step(
        r, context,
        [&](Batch* batch) {
          const Tensor images = in_layout(batches[next], layout);  // dense, as stored
          batch->images.assign(images.data<float>(), images.data<float>() + images.numel());
          batch->labels = labels[next];
          batch->count = static_cast<int64_t>(labels[next].size());
          ++next;
        },
        false);
    std::vector<double> losses;
    for (int s = 0; s < static_cast<int>(batches.size()); ++s) {
      const StepMetrics m =
          step.step.run({.step = s, .lr = 0.02, .last = s + 1 == static_cast<int>(batches.size())});
      losses.push_back(m.loss_sum / m.samples);
    }
    return losses;
  }

  // A host tensor with t's values stored in `layout`.
  Tensor in_layout(const Tensor& t, Layout layout) {
    if (layout == t.layout()) return t;
    Tensor c = Tensor::empty(t.shape(), cpu().allocator(), DType::f32, layout);
    c.copy_from(t);
    return c;
  }

  void compare_five_steps(const std::string& model, const Shape& input, int64_t classes,
                          bool channels_last = false) {
    ModelSpec spec;
    spec.name = model;
    spec.num_classes = classes;
    spec.in_channels = input[1];
    Replica c, g;
    build(c, cpu(), spec, input);
    spec.channels_last = channels_last;
    build(g, gpu(), spec, input);
    if (channels_last) {
      EXPECT_EQ(g.net->input().layout(), Layout::nhwc);
    }
    initialize_parameters(c.store, 7);
    copy_values(g.store, c.store);
    std::vector<Tensor> batches;
    std::vector<std::vector<int64_t>> labels;
    for (int s = 0; s < 5; ++s) {
      batches.push_back(random(input));
      labels.emplace_back(static_cast<std::size_t>(input[0]));
      for (std::size_t i = 0; i < labels.back().size(); ++i)
        labels.back()[i] = static_cast<int64_t>((i * 7 + s) % classes);
    }
    const std::vector<double> lc = train_steps(c, cpu(), batches, labels);
    const std::vector<double> lg = train_steps(g, gpu(), batches, labels);
    for (int s = 0; s < 5; ++s)
      EXPECT_NEAR(lg[s], lc[s], 1e-3 * std::max(1.0, std::abs(lc[s]))) << model << " step " << s;
    // The GPU store is aligned (gaps between entries): compare a packed host copy.
    ParamStore packed;
    packed.mirror(g.store, cpu().allocator());
    copy_values(packed, g.store);
    EXPECT_TRUE(close(packed.flat_params(), c.store.flat_params(), 1e-3)) << model << " weights";
    EXPECT_TRUE(close(packed.flat_buffers(), c.store.flat_buffers(), 1e-3))
        << model << " BN statistics";
    for (const ParamEntry& e : g.store.entries()) {
      if (e.kind != EntryKind::counter) {
        EXPECT_EQ(e.offset % 64, 0) << e.name;
      }
    }
  }
};

TEST_F(GpuTraining, ResNet18FiveStepsMatchCpu) {
  compare_five_steps("resnet18", Shape{4, 3, 64, 64}, 10);
}

TEST_F(GpuTraining, DenseNetBc100FiveStepsMatchCpu) {
  compare_five_steps("densenet_bc_100_k12", Shape{4, 3, 32, 32}, 10);
}

TEST_F(GpuTraining, ResNet20OptionAShortcutsMatchCpu) {
  compare_five_steps("resnet20", Shape{4, 3, 32, 32}, 10);
}

TEST_F(GpuTraining, ChannelsLastResNet18AndSeResNet20MatchCpu) {
  compare_five_steps("resnet18", Shape{4, 3, 64, 64}, 10, true);
  compare_five_steps("se_resnet20", Shape{4, 3, 32, 32}, 10, true);
  // 32x32: the last stage runs on 1x1 maps, still channels-last (batch 16, so
  // that its training-mode BN normalizes 16 values per channel, as at 64x64).
  compare_five_steps("resnet18", Shape{16, 3, 32, 32}, 10, true);
}

TEST_F(GpuTraining, SeResNet20MatchesCpu) {
  compare_five_steps("se_resnet20", Shape{4, 3, 32, 32}, 10);
}

// A steady-state training step as the trainer runs it (metrics kept on the
// device, ready gradients reported) allocates no device memory: no cudaMalloc
// (which synchronizes the device) next to NCCL. fp32 NCHW, bf16 and fp16
// channels-last (fp16: cuDNN's fused BN+ReLU path), and the memory-efficient
// DenseNet with its shared buffers.
TEST_F(GpuTraining, SteadyStateStepsAllocateNothing) {
  struct Case {
    const char* model;
    DType dtype;
    bool channels_last;
  };
  for (const Case& k :
       {Case{"resnet18", DType::f32, false}, Case{"resnet18", DType::bf16, true},
        Case{"resnet18", DType::f16, true}, Case{"densenet_bc_100_k12", DType::bf16, false}}) {
    SCOPED_TRACE(std::string(k.model) + " " + to_string(k.dtype));
    ContextOptions options;
    options.backend = Backend::cuda;
    options.activation_dtype = k.dtype;
    Context context(options);
    ModelSpec spec;
    spec.name = k.model;
    spec.num_classes = 10;
    spec.channels_last = k.channels_last;
    const Shape input{8, 3, 32, 32};
    Replica r;
    build(r, context, spec, input);
    ParamStore host;
    ModelSpec host_spec = spec;
    host_spec.channels_last = false;
    auto host_net = build_model(cpu(), host_spec, host, input);
    initialize_parameters(host, 4);
    copy_values(r.store, host);
    // Metrics stay on the device until the last step.
    Batch batch;
    batch.count = input[0];
    batch.images = random(input).to_vector();  // any layout: the values are random
    batch.labels = {0, 1, 2, 3, 4, 5, 6, 7};
    ReplicaStep step(
        r, context, [&batch](Batch* next) { *next = batch; }, k.dtype == DType::f16);
    std::size_t after_first = 0;
    StepMetrics metrics;
    for (int s = 0; s < 4; ++s) {
      metrics = step.step.run({.step = s, .lr = 0.01, .read_metrics = s == 3});
      if (s == 0) after_first = context.allocator().allocation_count();
    }
    EXPECT_EQ(context.allocator().allocation_count(), after_first);
    EXPECT_EQ(metrics.nonfinite, 0);
    EXPECT_GT(metrics.loss_sum, 0.0);
  }
}

// Memory-efficient and naive DenseNet on the GPU: same logits and gradients,
// and the efficient one plans less activation memory.
TEST_F(GpuTraining, MemoryEfficientDenseNetMatchesNaive) {
  const Shape input{8, 3, 32, 32};
  Replica eff, naive;
  ModelSpec spec;
  spec.name = "densenet_bc_100_k12";
  spec.memory_efficient = true;
  build(eff, gpu(), spec, input);
  spec.memory_efficient = false;
  build(naive, gpu(), spec, input);
  ParamStore host;
  auto host_net = build_model(cpu(), spec, host, input);
  initialize_parameters(host, 3);
  copy_values(eff.store, host);
  copy_values(naive.store, host);
  const Tensor batch = random(input);
  const std::vector<int64_t> labels{0, 1, 2, 3, 4, 5, 6, 7};
  for (Replica* r : {&eff, &naive}) {
    cuda::copy(r->net->input(), batch, stream());
    r->net->forward(Mode::training);
    r->loss->forward(r->net->output(), labels);
    r->loss->backward(r->net->output_grad());
    r->store.zero_grads();
    r->net->backward();
  }
  const Tensor naive_logits = download(naive.net->output());
  EXPECT_TRUE(close(eff.net->output(), naive_logits, 1e-5));
  EXPECT_TRUE(close(eff.store.flat_grads(), download(naive.store.flat_grads()), 1e-4));
  EXPECT_LT(eff.net->activation_bytes() + eff.net->pool_bytes(),
            naive.net->activation_bytes() + naive.net->pool_bytes());
}

}  // namespace
}  // namespace convnet::testing
