#include "trainer/train_step.h"

#include <array>
#include <cmath>
#include <optional>
#include <string>
#include <utility>

#include "core/error.h"

namespace convnet {

bool reads_metrics_every_step(std::optional<ReadMetrics> policy, Backend backend) {
  return policy ? *policy == ReadMetrics::step : backend != Backend::cuda;
}

TrainStep::TrainStep(TrainStepParts parts)
    : parts_(std::move(parts)), feed_(parts_.context, parts_.net.input()) {
  CONVNET_CHECK(parts_.accumulate > 0, "accumulate must be positive, got ", parts_.accumulate);
  CONVNET_CHECK(bool(parts_.next_batch), "a training step needs a source of micro-batches");
}

StepMetrics TrainStep::run(const StepPlan& plan) {
  if (unread_from_step_ < 0) unread_from_step_ = plan.step;
  noted_step_ = plan.step + 1;
  parts_.net.set_step(plan.step);  // stochastic depth draws from it
  if (parts_.arrivals) parts_.arrivals->note(noted_step_, StepPhase::compute);
  Net& net = parts_.net;
  parts_.store.zero_grads();
  parts_.reducer.begin_step();
  for (int64_t a = 0; a < parts_.accumulate; ++a) {
    const bool last_micro_batch = a + 1 == parts_.accumulate;
    commit_next_micro_batch();
    net.forward(Mode::training);
    if (batch_.labels_b.empty() || batch_.lambda >= 1.0) {
      parts_.loss.forward_accumulate(net.output(), batch_.labels);
      parts_.loss.backward(net.output_grad());
    } else {
      mixed_loss();
    }
    unread_samples_ += static_cast<double>(batch_.count);
    scale_loss_gradient();
    if (last_micro_batch)
      net.backward([this](int64_t ready) { parts_.reducer.mark_ready(std::size_t(ready)); });
    else
      net.backward();
    if (!(plan.last && last_micro_batch)) prefetch();  // none past the run's last
  }
  StepMetrics metrics = agree(plan);
  if (metrics.read && !parts_.scaler.enabled()) check_finite_gradients(plan, metrics);
  net.update_running_statistics(parts_.accumulate * parts_.communicator.size());
  update(plan.lr, metrics);
  return metrics;
}

void TrainStep::commit_next_micro_batch() {
  if (prefetch_error_) std::rethrow_exception(prefetch_error_);
  if (!prefetched_) {
    fetch(&next_batch_);
    feed_.stage(next_batch_.images);
  }
  std::swap(batch_, next_batch_);
  feed_.commit(batch_.images);
  prefetched_ = false;
}

void TrainStep::prefetch() {
  try {
    fetch(&next_batch_);
    feed_.stage(next_batch_.images);
    prefetched_ = true;
  } catch (...) {
    prefetch_error_ = std::current_exception();
  }
}

// The next micro-batch, with the wait for it noted for stall reports.
void TrainStep::fetch(Batch* batch) {
  if (parts_.arrivals) parts_.arrivals->note(noted_step_, StepPhase::data);
  parts_.next_batch(batch);
  if (parts_.arrivals) parts_.arrivals->note(noted_step_, StepPhase::compute);
}

// A mixed micro-batch (datasets/batch_mix.h): cross-entropy is linear in
// its target, so the loss of lambda onehot(a) + (1 - lambda) onehot(b) is
// lambda CE(a) + (1 - lambda) CE(b) and its gradient the same mix of the two
// gradients, built in output_grad(). Metrics are counted on the host (a
// device wait on the GPU), top-1/top-5 against the labels of larger weight.
double mixed_cross_entropy(SoftmaxCrossEntropy& loss, const Tensor& logits, const Tensor& dlogits,
                           const std::vector<int64_t>& labels_a,
                           const std::vector<int64_t>& labels_b, double lambda) {
  const double loss_a = loss.forward(logits, labels_a);
  loss.backward(dlogits);
  scale_in_place(dlogits, static_cast<float>(lambda / (1 - lambda)));
  const double loss_b = loss.forward(logits, labels_b);
  loss.backward(dlogits, GradMode::accumulate);
  scale_in_place(dlogits, static_cast<float>(1 - lambda));  // lambda g_a + (1 - lambda) g_b
  return lambda * loss_a + (1 - lambda) * loss_b;
}

void TrainStep::mixed_loss() {
  const Tensor& logits = parts_.net.output();
  const double lambda = batch_.lambda;
  const double mean = mixed_cross_entropy(parts_.loss, logits, parts_.net.output_grad(),
                                          batch_.labels, batch_.labels_b, lambda);
  if (!std::isfinite(mean)) {
    ++mixed_.nonfinite;
    return;
  }
  const Tensor host = host_copy_if_device(logits);
  const std::vector<int64_t>& major = lambda >= 0.5 ? batch_.labels : batch_.labels_b;
  mixed_.loss_sum += mean * static_cast<double>(batch_.count);
  mixed_.top1 += count_top_k(host, major, 1);
  mixed_.top5 += count_top_k(host, major, std::min<int64_t>(5, host.shape()[1]));
}

// The mean over micro-batches, times the fp16 loss scale (a power of two).
void TrainStep::scale_loss_gradient() {
  const double factor = parts_.scaler.scale() / static_cast<double>(parts_.accumulate);
  if (factor != 1.0) scale_in_place(parts_.net.output_grad(), static_cast<float>(factor));
}

// Waits for the gradient buckets, then one allreduce: the stop flag alone,
// or with the metrics when they are read. Every rank takes the same branches,
// so the sums agree.
StepMetrics TrainStep::agree(const StepPlan& plan) {
  if (parts_.arrivals) parts_.arrivals->arrived(plan.step + 1);
  std::optional<Watchdog::Scope> waiting;
  if (parts_.watchdog) waiting.emplace(*parts_.watchdog, plan.step + 1, "the gradient allreduce");
  parts_.reducer.finish();
  reduce_batch_statistics();
  enum : std::size_t { kLoss, kTop1, kTop5, kSamples, kNonfinite, kStop, kSums };
  std::array<double, kSums> sums{};
  sums[kStop] = parts_.stop_requested && parts_.stop_requested() ? 1 : 0;
  bool read = plan.read_metrics || parts_.scaler.enabled();
  if (!read) {
    parts_.communicator.allreduce(&sums[kStop], 1, ReduceOp::sum);
    read = sums[kStop] > 0;
  }
  if (read) {
    const SoftmaxCrossEntropy::Metrics local = parts_.loss.take_metrics();
    sums[kLoss] = local.loss_sum + mixed_.loss_sum;
    sums[kTop1] = static_cast<double>(local.top1 + mixed_.top1);
    sums[kTop5] = static_cast<double>(local.top5 + mixed_.top5);
    sums[kSamples] = unread_samples_;
    sums[kNonfinite] = static_cast<double>(local.nonfinite + mixed_.nonfinite);
    mixed_ = {};
    parts_.communicator.allreduce(sums.data(), kSums, ReduceOp::sum);
  }
  StepMetrics metrics;
  metrics.read = read;
  metrics.stop = sums[kStop] > 0;
  metrics.exposed_comm_s = parts_.reducer.last_step().exposed_s;
  if (!read) return metrics;
  metrics.nonfinite = static_cast<int64_t>(sums[kNonfinite]);
  check_finite(plan, metrics.nonfinite);
  metrics.loss_sum = sums[kLoss];
  metrics.top1 = sums[kTop1];
  metrics.top5 = sums[kTop5];
  metrics.samples = sums[kSamples];
  unread_from_step_ = plan.step + 1;
  unread_samples_ = 0;
  return metrics;
}

// The step's BatchNorm statistic sums, summed over ranks: on the GPU the
// update kernels wait for it on the stream, on the CPU this waits.
void TrainStep::reduce_batch_statistics() {
  const Tensor& sums = parts_.store.flat_stat_sums();
  if (!sums.defined() || parts_.communicator.size() == 1) return;
  statistics_reduce_ = parts_.communicator.allreduce_async(
      sums.data<float>(), static_cast<std::size_t>(sums.numel()), ReduceOp::sum);
  if (!statistics_reduce_.defer()) statistics_reduce_.wait();
}

// fp16 overflows are the loss scaler's (update); otherwise a non-finite loss
// ends the run before the update, or (metrics read late) before anything is
// saved.
void TrainStep::check_finite(const StepPlan& plan, int64_t nonfinite) const {
  if (nonfinite == 0 || parts_.scaler.enabled()) return;
  const bool this_step = unread_from_step_ == plan.step;
  throw Error(detail::concat("non-finite loss ", this_step ? "at step " : "in steps ",
                             this_step ? "" : std::to_string(unread_from_step_ + 1) + "-",
                             plan.step + 1, " (epoch ", plan.epoch + 1, ") on ", nonfinite,
                             " micro-batch(es); stopping before ",
                             this_step ? "the weights are updated" : "anything is saved",
                             " (lower --lr, or add --warmup-epochs)"));
}

// A finite loss can still give inf or NaN gradients (an overflow in
// backward, a too-large --lr): the step stops before the update, so the
// weights and every checkpoint stay finite. Checked when metrics are read
// (every step on the CPU; on the GPU it costs a host wait).
void TrainStep::check_finite_gradients(const StepPlan& plan, const StepMetrics& metrics) const {
  if (all_finite(parts_.context, parts_.store.flat_grads())) return;
  throw Error(detail::concat("non-finite gradients (NaN or inf) at step ", plan.step + 1,
                             " (epoch ", plan.epoch + 1, ") with a finite loss ",
                             metrics.samples > 0 ? metrics.loss_sum / metrics.samples : 0.0,
                             "; stopping before the weights are updated (lower --lr, add "
                             "--warmup-epochs, or check the input data)"));
}

// Averaged gradients and summed metrics are identical on every rank: every
// rank applies or skips alike.
void TrainStep::update(double lr, StepMetrics& metrics) {
  LossScaler& scaler = parts_.scaler;
  metrics.loss_scale = scaler.scale();
  metrics.forward_overflow = scaler.enabled() && metrics.nonfinite > 0;
  if (metrics.forward_overflow) {  // the loss scale cannot help: skipped, scale kept
    scaler.skip_forward_overflow();
    metrics.applied = false;
  } else if (scaler.enabled()) {
    metrics.applied = scaler.update(all_finite(parts_.context, parts_.store.flat_grads()));
  }
  if (metrics.applied && parts_.clip_grad_norm > 0) metrics.grad_norm = clip_gradients();
  if (metrics.applied)
    parts_.sgd.step(parts_.store.flat_params(), parts_.store.flat_grads(), lr,
                    1.0 / metrics.loss_scale);
}

// The averaged gradients' L2 norm (identical on every rank); scaled to
// clip_grad_norm when above it, as clip_grad_norm_ (norm + 1e-6). Host
// memory: the trainer refuses --clip-grad-norm on the GPU.
double TrainStep::clip_gradients() {
  const Tensor& grads = parts_.store.flat_grads();
  const float* g = grads.data<float>();
  double sum = 0;
  for (int64_t i = 0; i < grads.numel(); ++i) sum += double(g[i]) * g[i];
  const double norm = std::sqrt(sum);
  if (norm > parts_.clip_grad_norm)
    scale_in_place(grads, static_cast<float>(parts_.clip_grad_norm / (norm + 1e-6)));
  return norm;
}

}  // namespace convnet
