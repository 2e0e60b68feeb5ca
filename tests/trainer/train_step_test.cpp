// TrainStep (trainer/train_step.h), the step the trainer, `convnet bench` and
// these tests share: one rank (SingleProcessCommunicator) on the CPU.
#include "trainer/train_step.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <random>

#include "comm/single_process_communicator.h"
#include "core/error.h"
#include "models/zoo.h"
#include "tests/testing/test_util.h"

namespace convnet {
namespace {

// A model, its loss, optimizer and reducer on one rank, and a source of
// random micro-batches (labels b % 10) that a test may poison.
struct Replica {
  using Builder = std::function<std::unique_ptr<Net>(Context&, ParamStore&)>;
  Replica(const std::string& model, int64_t batch, int64_t size,
          LossScaler scaler = LossScaler(false))
      : Replica(
            [&](Context& context, ParamStore& store) {
              return build_model(context, {.name = model, .num_classes = 10}, store,
                                 Shape{batch, 3, size, size});
            },
            scaler) {}
  explicit Replica(const Builder& build, LossScaler scaler = LossScaler(false))
      : context(ContextOptions{.num_threads = 2}),
        net(build(context, store)),
        loss(SoftmaxCrossEntropy::create(context, "loss", {}, net->output().shape())),
        sgd(context, {.momentum = 0.9, .weight_decay = 1e-4},
            store.decay_segments(DecayScope::weights_only), store.flat_size()),
        reducer(communicator, store.flat_grads().data<float>(), store.flat_size(), {}),
        scaler(scaler) {
    initialize_parameters(store, 5);
  }

  TrainStep make_step(int64_t accumulate = 1, std::function<bool()> stop = {}, double clip = 0) {
    return TrainStep({.context = context,
                      .net = *net,
                      .loss = *loss,
                      .store = store,
                      .sgd = sgd,
                      .reducer = reducer,
                      .communicator = communicator,
                      .scaler = scaler,
                      .next_batch = [this](Batch* batch) { next(batch); },
                      .accumulate = accumulate,
                      .stop_requested = std::move(stop),
                      .clip_grad_norm = clip});
  }
  double grad_norm() const {
    double sum = 0;
    for (float g : store.flat_grads().to_vector()) sum += double(g) * g;
    return std::sqrt(sum);
  }

  void next(Batch* batch) {
    ++batches_served;
    if (fail_at_batch == batches_served) throw Error("disk read failed");
    const Tensor& input = net->input();
    batch->count = input.shape()[0];
    batch->images.resize(static_cast<std::size_t>(input.numel()));
    std::normal_distribution<float> pixel(0.0f, 1.0f);
    for (float& x : batch->images) x = pixel(rng);
    batch->labels.resize(static_cast<std::size_t>(batch->count));
    for (int64_t b = 0; b < batch->count; ++b) batch->labels[std::size_t(b)] = b % 10;
  }

  // NaN in the classifier's bias ("fc.bias"): every logit is NaN.
  void poison_classifier() {
    const auto& entries = store.entries();
    for (std::size_t i = 0; i < entries.size(); ++i)
      if (entries[i].name == "fc.bias") {
        const Tensor bias = store.param(static_cast<int>(i));
        std::fill_n(bias.data<float>(), bias.numel(), std::numeric_limits<float>::quiet_NaN());
        return;
      }
    FAIL() << "no fc.bias";
  }
  // The weights' bytes (NaN compares unequal to itself).
  std::vector<uint32_t> weights() const {
    const std::vector<float> values = store.flat_params().to_vector();
    std::vector<uint32_t> bits(values.size());
    std::memcpy(bits.data(), values.data(), values.size() * sizeof(float));
    return bits;
  }

  SingleProcessCommunicator communicator;
  Context context;
  ParamStore store;
  std::unique_ptr<Net> net;
  std::unique_ptr<SoftmaxCrossEntropy> loss;
  Sgd sgd;
  GradientReducer reducer;
  LossScaler scaler;
  std::mt19937 rng{3};
  int batches_served = 0;
  int fail_at_batch = -1;  // this call of next() throws
};

// A training step allocates nothing once the net is built: activations,
// scratch and workspaces are planned up front.
TEST(TrainStep, SteadyStateStepsAllocateNothing) {
  for (const std::string name : {"resnet20", "se_resnet20", "densenet40_k12", "resnet18"}) {
    Replica r(name, 2, name == "resnet18" ? 64 : 16);
    TrainStep step = r.make_step();
    std::size_t after_first = 0;
    for (int s = 0; s < 3; ++s) {
      const StepMetrics metrics = step.run({.step = s, .lr = 0.01});
      EXPECT_TRUE(metrics.read && metrics.applied) << name;
      EXPECT_EQ(metrics.samples, 2) << name;
      EXPECT_EQ(metrics.nonfinite, 0) << name;
      if (s == 0) after_first = r.context.allocator().allocation_count();
    }
    EXPECT_GT(after_first, 0u);
    EXPECT_EQ(r.context.allocator().allocation_count(), after_first) << name;
  }
}

// Metrics not read keep accumulating: a read after three unread steps
// returns the three steps' sums, and the weights do not depend on when
// metrics are read. Same seeds, same batches: bit for bit.
TEST(TrainStep, UnreadMetricsAccumulateUntilTheNextRead) {
  Replica eager("resnet20", 4, 16), lazy("resnet20", 4, 16);
  TrainStep eager_step = eager.make_step(), lazy_step = lazy.make_step();
  double eager_loss = 0, eager_top1 = 0;
  StepMetrics lazy_metrics;
  for (int s = 0; s < 3; ++s) {
    const StepMetrics e = eager_step.run({.step = s, .lr = 0.05});
    eager_loss += e.loss_sum;
    eager_top1 += e.top1;
    lazy_metrics = lazy_step.run({.step = s, .lr = 0.05, .read_metrics = s == 2});
    EXPECT_EQ(lazy_metrics.read, s == 2);
    if (s < 2) {
      EXPECT_EQ(lazy_metrics.samples, 0);
    }
  }
  EXPECT_EQ(lazy_metrics.samples, 12);
  EXPECT_DOUBLE_EQ(lazy_metrics.loss_sum, eager_loss);
  EXPECT_EQ(lazy_metrics.top1, eager_top1);
  EXPECT_EQ(lazy.weights(), eager.weights());
}

// accumulate = 2 reads two micro-batches per step and counts both.
TEST(TrainStep, AccumulationRunsEveryMicroBatch) {
  Replica r("resnet20", 2, 16);
  TrainStep step = r.make_step(2);
  const std::vector<uint32_t> before = r.weights();
  const StepMetrics metrics = step.run({.step = 0, .lr = 0.05});
  EXPECT_EQ(metrics.samples, 4);
  EXPECT_NE(r.weights(), before);
  step.run({.step = 1, .lr = 0.05, .last = true});
  EXPECT_EQ(r.batches_served, 4) << "no micro-batch fetched past the last step";
}

// --clip-grad-norm: the step reports the averaged gradients' norm and
// updates with them scaled to the limit (clip_grad_norm_'s norm + 1e-6);
// below the limit they are left alone.
TEST(TrainStep, ClipGradNormScalesTheGradientsToTheLimit) {
  Replica plain("resnet20", 2, 16), clipped("resnet20", 2, 16), loose("resnet20", 2, 16);
  plain.make_step().run({.step = 0, .lr = 0.05});
  const double norm = plain.grad_norm();
  const StepMetrics m = clipped.make_step(1, {}, 0.01).run({.step = 0, .lr = 0.05});
  EXPECT_NEAR(m.grad_norm, norm, 1e-6 * norm);
  EXPECT_NEAR(clipped.grad_norm(), 0.01 * norm / (norm + 1e-6), 1e-6);
  loose.make_step(1, {}, 10 * norm).run({.step = 0, .lr = 0.05});
  EXPECT_EQ(loose.weights(), plain.weights());
  EXPECT_NE(clipped.weights(), plain.weights());
}

// A mixed micro-batch's loss and gradient: lambda CE(a) + (1 - lambda) CE(b),
// against the double-precision reference of each target.
TEST(TrainStep, MixedTargetsMixTheLossAndItsGradient) {
  Context context;
  const Shape shape{4, 5};
  auto loss = SoftmaxCrossEntropy::create(context, "loss", {.label_smoothing = 0.1}, shape);
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  std::vector<float> values(20);
  for (float& v : values) v = normal(rng);
  Tensor logits = Tensor::empty(shape, context.allocator());
  copy_from_host(logits, values.data());
  Tensor dlogits = Tensor::zeros(shape, context.allocator());
  const std::vector<int64_t> a{0, 1, 2, 3}, b{3, 2, 1, 0};
  const double lambda = 0.3;
  const double mean = mixed_cross_entropy(*loss, logits, dlogits, a, b, lambda);
  const ref::Array x = ref::from_tensor(logits);
  const SoftmaxCrossEntropyOptions o{.label_smoothing = 0.1};
  EXPECT_NEAR(mean,
              lambda * ref::softmax_cross_entropy_forward(o, x, a) +
                  (1 - lambda) * ref::softmax_cross_entropy_forward(o, x, b),
              1e-6);
  const ref::Array ga = ref::softmax_cross_entropy_backward(o, x, a);
  const ref::Array gb = ref::softmax_cross_entropy_backward(o, x, b);
  const std::vector<float> got = dlogits.to_vector();
  for (int64_t i = 0; i < 20; ++i) EXPECT_NEAR(got[i], lambda * ga[i] + (1 - lambda) * gb[i], 1e-6);
}

// A non-finite loss ends the run before the update, naming the step.
TEST(TrainStep, NonFiniteLossThrowsBeforeTheUpdate) {
  Replica r("resnet20", 2, 16);
  TrainStep step = r.make_step();
  step.run({.step = 0, .lr = 0.05});
  step.run({.step = 1, .lr = 0.05});
  r.poison_classifier();
  const std::vector<uint32_t> before = r.weights();
  EXPECT_TRUE(
      testing::throws_error_with([&] { step.run({.step = 2, .epoch = 0, .lr = 0.05}); },
                                 "non-finite loss at step 3 (epoch 1) on 1 micro-batch(es); "
                                 "stopping before the weights are updated"));
  EXPECT_EQ(r.weights(), before);
}

// Logits = the input, and a parameter whose gradient backward sets to inf
// once `poisoned` is true: a finite loss with non-finite gradients (as an
// overflow inside backward gives).
class PoisonedGradientOp final : public Op {
 public:
  PoisonedGradientOp(int param, const bool& poisoned) : param_(param), poisoned_(poisoned) {}
  void bind(ParamStore& store) override { grad_ = store.grad(param_); }
  bool backward_needs_input(int) const override { return false; }
  void forward(Mode, const std::vector<Tensor>& in, const Tensor& out) override {
    out.copy_from(in[0]);
  }
  void backward(const std::vector<Tensor>&, const Tensor&, const Tensor&,
                const std::vector<Tensor>&, const std::vector<GradMode>&) override {
    grad_.fill(poisoned_ ? std::numeric_limits<float>::infinity() : 1.0f);
  }

 private:
  int param_;
  const bool& poisoned_;
  Tensor grad_;
};

// Non-finite gradients with a finite loss: the step stops before the update,
// naming the step, instead of writing inf into the weights.
TEST(TrainStep, NonFiniteGradientsThrowBeforeTheUpdate) {
  bool poisoned = false;
  Replica r([&](Context& context, ParamStore& store) {
    auto net = std::make_unique<Net>(context, store);
    const int param = store.add_parameter("poison.weight", Shape{3}, ParamRole::weight);
    const ValueId logits = net->add_reshape(net->add_input(Shape{4, 10, 1, 1}), Shape{4, 10});
    net->set_output(
        net->add_op(std::make_unique<PoisonedGradientOp>(param, poisoned), {logits}, Shape{4, 10}));
    net->plan();
    return net;
  });
  TrainStep step = r.make_step();
  step.run({.step = 0, .lr = 0.05});
  poisoned = true;
  const std::vector<uint32_t> before = r.weights();
  EXPECT_TRUE(testing::throws_error_with([&] { step.run({.step = 1, .epoch = 0, .lr = 0.05}); },
                                         "non-finite gradients (NaN or inf) at step 2 (epoch 1) "
                                         "with a finite loss"));
  EXPECT_EQ(r.weights(), before);
}

// Read late, the message names the unread steps.
TEST(TrainStep, NonFiniteLossReadLateNamesTheUnreadSteps) {
  Replica r("resnet20", 2, 16);
  TrainStep step = r.make_step();
  r.poison_classifier();
  step.run({.step = 0, .lr = 0.05, .read_metrics = false});
  EXPECT_TRUE(testing::throws_error_with([&] { step.run({.step = 1, .lr = 0.05}); },
                                         "non-finite loss in steps 1-2 (epoch 1)"));
}

// fp16's loss scaler skips a step whose loss is inf or NaN, keeping the
// weights and the scale.
TEST(TrainStep, LossScalerSkipsAForwardOverflow) {
  Replica r("resnet20", 2, 16, LossScaler(true));
  TrainStep step = r.make_step();
  const StepMetrics clean = step.run({.step = 0, .lr = 0.05});
  EXPECT_TRUE(clean.applied);
  EXPECT_EQ(clean.loss_scale, 65536.0);
  r.poison_classifier();
  const std::vector<uint32_t> before = r.weights();
  const StepMetrics skipped = step.run({.step = 1, .lr = 0.05, .read_metrics = false});
  EXPECT_TRUE(skipped.read) << "fp16 reads every step";
  EXPECT_FALSE(skipped.applied);
  EXPECT_TRUE(skipped.forward_overflow);
  EXPECT_EQ(r.scaler.scale(), 65536.0);
  EXPECT_EQ(r.scaler.skipped_steps(), 1);
  EXPECT_EQ(r.weights(), before);
}

// A prefetch that fails is reported where its micro-batch is used: the step
// that prefetched it completes.
TEST(TrainStep, AFailedPrefetchSurfacesAtTheNextStep) {
  Replica r("resnet20", 2, 16);
  TrainStep step = r.make_step();
  r.fail_at_batch = 2;  // prefetched during step 0
  EXPECT_TRUE(step.run({.step = 0, .lr = 0.05}).applied);
  EXPECT_TRUE(
      testing::throws_error_with([&] { step.run({.step = 1, .lr = 0.05}); }, "disk read failed"));
}

// A stop request is agreed on and forces a read, so the step's metrics are
// there for the checkpoint that follows.
TEST(TrainStep, AStopRequestIsReportedWithTheMetrics) {
  Replica r("resnet20", 2, 16);
  bool requested = false;
  TrainStep step = r.make_step(1, [&requested] { return requested; });
  EXPECT_FALSE(step.run({.step = 0, .lr = 0.05, .read_metrics = false}).stop);
  requested = true;
  const StepMetrics metrics = step.run({.step = 1, .lr = 0.05, .read_metrics = false});
  EXPECT_TRUE(metrics.stop);
  EXPECT_TRUE(metrics.read);
  EXPECT_EQ(metrics.samples, 4);
}

}  // namespace
}  // namespace convnet
