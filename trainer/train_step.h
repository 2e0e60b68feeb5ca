// One data-parallel training step, written once: `convnet train`,
// `convnet bench` and the tests all run this.
//
// run(plan), on every rank:
//   zero the gradients
//   for each of the `accumulate` micro-batches:
//     commit the prefetched micro-batch as the net's input
//     forward; the loss adds its sum and top-k counts where it runs (on the
//       GPU without a host wait)
//     dlogits x loss scale / accumulate (the buffer holds the mean)
//     backward; the last one reports finished gradient prefixes to the
//       GradientReducer, which averages buckets over ranks while backward runs
//     prefetch the next micro-batch (on the GPU: its copy starts now)
//   wait for the buckets; sum the BatchNorm statistics of the step's
//     micro-batches over ranks; agree on stop requests and, when read, on metrics
//   a non-finite loss throws (not under fp16, which skips the step below), and
//     so do non-finite gradients when metrics were read
//   fp16: the loss scaler skips a step whose gradients overflowed
//   BatchNorm running statistics move once, from all ranks' micro-batches
//     (so they do not depend on the rank count; models/builder.h)
//   SGD with the plan's learning rate, gradients x 1 / loss scale
//
// Metrics are read (a host wait on the GPU) when the plan asks, under fp16
// (its loss scaler decides every step) and when a rank asked to stop;
// otherwise they keep accumulating where the loss runs and the next read
// returns the sums since the last one. A prefetch that fails (a corrupt
// sample, an I/O error) throws where that micro-batch is used, so the step
// before it completes as it would have.
#pragma once

#include <cstdint>
#include <exception>
#include <functional>
#include <string>

#include "comm/communicator.h"
#include "comm/gradient_reducer.h"
#include "core/input_feed.h"
#include "datasets/loader.h"
#include "layers/sgd.h"
#include "layers/softmax_cross_entropy.h"
#include "models/net.h"
#include "models/param_store.h"
#include "trainer/config.h"
#include "trainer/loss_scaler.h"
#include "trainer/watchdog.h"

namespace convnet {

// What a step did. The sums are over ranks and over the steps since metrics
// were last read; all zero when `read` is false.
struct StepMetrics {
  double loss_sum = 0;        // summed per-sample loss
  double top1 = 0, top5 = 0;  // correct predictions
  double samples = 0;
  int64_t nonfinite = 0;          // micro-batches with an inf or NaN loss
  bool read = false;              // loss and accuracy were read back this step
  bool stop = false;              // some rank asked to stop (a signal)
  bool applied = true;            // the weights were updated (fp16 skips overflows)
  bool forward_overflow = false;  // fp16: the loss itself was inf or NaN
  double loss_scale = 1;          // the scale the step ran with (1 unless fp16)
  double exposed_comm_s = 0;      // communication backward did not hide
  double grad_norm = 0;           // with clip_grad_norm: the L2 norm before clipping
};

// What to do in one step.
struct StepPlan {
  int64_t step = 0;   // 0-based global step (error messages, the watchdog)
  int64_t epoch = 0;  // 0-based (error messages)
  double lr = 0;
  bool read_metrics = true;  // read loss and accuracy back after this step
  bool last = false;         // fetch no micro-batch past this step
};

// The parts a step runs on; all outlive the TrainStep.
struct TrainStepParts {
  Context& context;
  Net& net;
  SoftmaxCrossEntropy& loss;  // on net's output
  ParamStore& store;          // net's parameters and gradients
  Sgd& sgd;
  GradientReducer& reducer;  // over store.flat_grads()
  Communicator& communicator;
  LossScaler& scaler;
  std::function<void(Batch*)> next_batch = {};  // the micro-batches, in order
  int64_t accumulate = 1;                       // micro-batches per step
  Watchdog* watchdog = nullptr;                 // armed while waiting for other ranks
  ArrivalBoard* arrivals = nullptr;  // told where each step is: data, compute, wait (stall reports)
  std::function<bool()> stop_requested = {};  // this rank's stop request; empty: none
  // > 0: the averaged gradients are scaled down to this L2 norm over all
  // parameters when above it (torch.nn.utils.clip_grad_norm_), before the update.
  double clip_grad_norm = 0;
};

// The loss of a mixed micro-batch, whose targets are lambda onehot(labels_a)
// + (1 - lambda) onehot(labels_b) (datasets/batch_mix.h), for 0 < lambda < 1:
// cross-entropy is linear in its target, so the mean loss is lambda CE(a) +
// (1 - lambda) CE(b) and dlogits (overwritten) the same mix of the two
// gradients. Returns the mean loss.
double mixed_cross_entropy(SoftmaxCrossEntropy& loss, const Tensor& logits, const Tensor& dlogits,
                           const std::vector<int64_t>& labels_a,
                           const std::vector<int64_t>& labels_b, double lambda);

// Whether metrics are read after every step under --read-metrics `policy`:
// auto (nullopt) reads every step on the CPU (a non-finite loss then stops
// the run before the update) and on the GPU only where the loop needs them
// (no host wait in a step). fp16 reads every step regardless.
bool reads_metrics_every_step(std::optional<ReadMetrics> policy, Backend backend);

class TrainStep {
 public:
  explicit TrainStep(TrainStepParts parts);

  // Runs one step (see the top of this file). Throws convnet::Error on a
  // non-finite loss (naming the steps) and rethrows a failed prefetch.
  StepMetrics run(const StepPlan& plan);

 private:
  void commit_next_micro_batch();
  void prefetch();
  void fetch(Batch* batch);
  void scale_loss_gradient();
  StepMetrics agree(const StepPlan& plan);
  void reduce_batch_statistics();
  void check_finite(const StepPlan& plan, int64_t nonfinite) const;
  void check_finite_gradients(const StepPlan& plan, const StepMetrics& metrics) const;
  void update(double lr, StepMetrics& metrics);
  double clip_gradients();
  void mixed_loss();

  TrainStepParts parts_;
  InputFeed feed_;
  Batch batch_, next_batch_;
  bool prefetched_ = false;
  std::exception_ptr prefetch_error_;
  PendingReduce statistics_reduce_;
  int64_t noted_step_ =
      0;  // the step stall notes name (1-based)  // deferred on the GPU until it completes
  int64_t unread_from_step_ = -1;  // the first step whose metrics were not read yet
  double unread_samples_ = 0;
  SoftmaxCrossEntropy::Metrics mixed_;  // of mixed micro-batches since the last read
};

}  // namespace convnet
