#include "trainer/trainer.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>

#include "comm/device_selection.h"
#include "comm/gradient_reducer.h"
#include "core/durable_file.h"
#include "core/error.h"
#include "datasets/loader.h"
#include "layers/sgd.h"
#include "models/weights_file.h"
#include "trainer/checkpoint.h"
#include "trainer/evaluator.h"
#include "trainer/host_shadow.h"
#include "trainer/init_weights.h"
#include "trainer/model_ema.h"
#include "trainer/progress.h"
#include "trainer/run_lock.h"
#include "trainer/run_setup.h"
#include "trainer/stop_signals.h"
#include "trainer/train_step.h"
#include "trainer/watchdog.h"

namespace convnet {
namespace {

// Broadcasts parameters, BN buffers and counters from rank 0 (the initial
// model). Afterwards every rank holds the same values: gradients are
// averaged and BN statistics move from all ranks' micro-batches.
void broadcast_model(Communicator& communicator, ParamStore& store) {
  if (communicator.size() == 1) return;
  communicator.broadcast(store.flat_params().data<float>(), store.flat_size() * 4, 0);
  if (store.num_buffer_elements() > 0)
    communicator.broadcast(store.flat_buffers().data<float>(), store.flat_buffer_size() * 4, 0);
  if (!store.counters().empty())
    communicator.broadcast(store.counters().data(), store.counters().size() * 8, 0);
}

// Ends the job after this rank timed out waiting for the others. A launcher
// that lost a host notices within its keepalive window (launch/mpirun.sh
// sets about 11 s) and ends the job itself (a stop signal, then SIGKILL),
// while an abort sent towards a host that cannot answer would wait for TCP
// to give up (about 15 minutes). So the launcher gets that window first, and
// a stop signal in it ends this rank at once (it cannot finish its step);
// then the abort ends a job whose silent rank is on a host that answers (a
// stopped process); and should even that not end this process, it exits.
[[noreturn]] void end_job(Communicator& communicator, const StopSignals& signals) {
  const auto window_end = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (std::chrono::steady_clock::now() < window_end) {
    if (signals.requested()) {
      std::fprintf(stderr, "convnet: the launcher is ending the job\n");
      std::fflush(stderr);
      std::_Exit(1);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::thread([] {
    std::this_thread::sleep_for(std::chrono::seconds(10));
    std::fprintf(stderr, "convnet: error: the launcher did not end the job; exiting\n");
    std::_Exit(1);
  }).detach();
  communicator.abort(1);
}

// Rank 0's account of a stall at `step`: the ranks that have not reached it,
// or whose notes stopped while the other waiting ranks kept sending theirs
// (every second), with their hosts, the last step they noted and where in
// it they were (the data loader, forward/backward, or waiting).
std::string describe_stall(ArrivalBoard& board, const Communicator& communicator, int64_t step) {
  constexpr double kSilentAfterSeconds = 2.5;
  const std::vector<Arrival> arrivals = board.arrivals();
  if (arrivals.empty()) return "";
  std::string silent;
  for (int r = 0; r < static_cast<int>(arrivals.size()); ++r) {
    const Arrival& a = arrivals[static_cast<std::size_t>(r)];
    if (a.reached(step) && a.seconds_ago < kSilentAfterSeconds) continue;
    silent += detail::concat(silent.empty() ? "" : ", ", "rank ", r, " on host ",
                             communicator.host_of(r), " (last heard ", int64_t(a.seconds_ago),
                             " s ago, at step ", a.step, ", ", describe(a.phase), ")");
  }
  if (silent.empty()) return "every rank is waiting here; the collective itself stalled";
  return "not answering: " + silent;
}

// This process's peak resident memory so far.
int64_t peak_rss_mib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss / 1024;  // KiB on Linux
}

// Training sums between two log lines, and when the interval began.
struct Interval {
  double loss_sum = 0, top1 = 0, top5 = 0, samples = 0;
  int64_t steps = 0;
  double start_s = 0, start_wait_s = 0;  // run time and loader wait at its start
  std::chrono::steady_clock::time_point clock = std::chrono::steady_clock::now();  // every rank

  double elapsed_s() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - clock).count();
  }

  void add(const StepMetrics& metrics) {
    loss_sum += metrics.loss_sum;
    top1 += metrics.top1;
    top5 += metrics.top5;
    samples += metrics.samples;
    ++steps;
  }
  void restart(double now_s, double wait_s) { *this = {.start_s = now_s, .start_wait_s = wait_s}; }
};

// One run of `convnet train`: the setup in the constructor, then run().
class TrainingRun {
 public:
  TrainingRun(const TrainConfig& config, const std::string& config_text,
              Communicator& communicator);
  TrainResult run();

 private:
  TrainStepParts step_parts();
  StepPlan plan(int64_t step) const;
  bool log_due(int64_t step) const;
  bool epoch_ends(int64_t step) const;
  void after_step(int64_t step, const StepMetrics& metrics);
  void report_skipped_step(int64_t step, const StepMetrics& metrics);
  void log(int64_t step, const StepMetrics& metrics, double data_wait);
  double slowest_data_wait(int64_t step);
  void report_end();
  bool evaluate(int64_t step);
  void write_per_class(int64_t step, const EvalTotals& totals) const;
  void checkpoint(int64_t step);
  void save_model();
  void require_finite_model(int64_t step);
  void open_run_directory();
  std::string header() const;
  WeightsMetadata metadata() const;
  double now() const { return progress_ ? progress_->elapsed() : 0; }

  const TrainConfig& config_;
  const std::string& config_text_;
  Communicator& communicator_;
  const bool root_;
  const int world_;
  const RunDirectoryLock run_lock_;  // rank 0, before anything reads or writes the run directory
  std::shared_ptr<Dataset> train_data_;
  const DataShape shape_;
  const ResumePlan resume_;
  const Layout layout_;
  const ModelSpec spec_;
  const LoaderOptions loader_options_;
  const RunPosition position_;
  const int64_t global_batch_;
  Loader loader_;
  std::shared_ptr<Dataset> val_data_;
  const LoaderOptions eval_options_;
  const int threads_;
  Context context_;
  ParamStore store_;
  ModelNets nets_;
  Net& net_;
  const SgdOptions sgd_options_;
  Sgd sgd_;
  HostShadow shadow_;
  const CheckpointSchedule checkpoints_;
  const LrSchedule schedule_;
  std::unique_ptr<Communicator> gradient_communicator_;
  GradientReducer reducer_;
  std::unique_ptr<ProgressReporter> progress_;  // rank 0
  std::unique_ptr<ArrivalBoard> arrivals_;
  CheckpointState state_;
  StopSignals signals_;
  Watchdog watchdog_;
  LossScaler scaler_;  // fp16: dynamic loss scaling, resumed exactly
  TrainStep step_;
  Interval interval_;
  TrainResult result_;
  std::string init_account_;       // what --init-weights loaded (empty: not used)
  std::unique_ptr<ModelEma> ema_;  // --model-ema
  void start_ema();
  EmaValues ema_values();
  void evaluate_ema(int64_t step);
};

std::shared_ptr<Dataset> open_validation_data(const TrainConfig& config, const DataShape& shape,
                                              const DatasetInfo& train) {
  if (config.val_data.empty()) return nullptr;
  auto data = std::make_shared<Dataset>(config.val_data);
  const DatasetInfo& val = data->info();
  CONVNET_CHECK(val.channels == shape.channels && val.num_classes <= shape.classes, config.val_data,
                ": channels or classes do not match ", config.train_data);
  // The same label must mean the same class in both.
  for (std::size_t k = 0; k < val.class_names.size() && k < train.class_names.size(); ++k)
    CONVNET_CHECK(val.class_names[k] == train.class_names[k], config.val_data, ": class ", k,
                  " is '", val.class_names[k], "', but '", train.class_names[k], "' in ",
                  config.train_data, ": the labels mean other classes");
  return data;
}

DecayScope decay_scope(const TrainConfig& config) {
  return config.no_bn_decay ? DecayScope::weights_only : DecayScope::all_parameters;
}

ModelSpec model_spec(const TrainConfig& config, const DataShape& shape, Layout layout) {
  return {.name = config.model,
          .num_classes = shape.classes,
          .in_channels = shape.channels,
          .memory_efficient = config.memory_efficient,
          .blocked_layout = is_blocked(layout),
          .channels_last = layout == Layout::nhwc,
          .drop_path = config.drop_path,
          .seed = static_cast<uint64_t>(config.seed),
          .bn_momentum = config.bn_momentum};
}

TrainingRun::TrainingRun(const TrainConfig& config, const std::string& config_text,
                         Communicator& communicator)
    : config_((check_train_config(config), model_info(config.model), config)),
      config_text_(config_text),
      communicator_(communicator),
      root_(communicator.rank() == 0),
      world_(communicator.size()),
      run_lock_(root_ ? RunDirectoryLock(config.run_dir) : RunDirectoryLock()),
      train_data_(std::make_shared<Dataset>(config.train_data)),
      shape_(data_shape(config, train_data_->info())),
      // Before the first collective that mismatched ranks would hang or garble.
      resume_((check_ranks_agree(communicator, training_facts(config_text, *train_data_)),
               plan_resume(config, communicator))),
      layout_(resolve_layout(config.layout, config.device, config.precision)),
      spec_(model_spec(config, shape_, layout_)),
      loader_options_(training_loader_options(
          config, train_data_->info(), model_input_layout(config.device, spec_) == Layout::nhwc,
          world_, communicator.rank(), resume_.accumulate)),
      position_(run_position(config, resume_, train_data_->info().count, world_)),
      global_batch_(config.batch_size * world_ * resume_.accumulate),
      loader_(train_data_, loader_options_,
              {position_.start_epoch, position_.start_step_in_epoch * resume_.accumulate}),
      val_data_(open_validation_data(config, shape_, train_data_->info())),
      eval_options_(evaluation_loader_options(config, loader_options_, loader_,
                                              val_data_ ? &val_data_->info() : nullptr)),
      threads_(config.threads > 0 ? config.threads : cores_per_local_rank(communicator)),
      context_(context_options_for_rank(config.device, threads_, config.precision, layout_,
                                        communicator)),
      nets_(context_, spec_, store_, shape_.channels, loader_.height(), loader_.width()),
      net_(nets_.get(config.batch_size)),
      sgd_options_{.momentum = config.momentum,
                   .weight_decay = config.weight_decay,
                   .nesterov = config.nesterov},
      sgd_(context_, sgd_options_, store_.decay_segments(decay_scope(config)), store_.flat_size()),
      shadow_(store_, sgd_, sgd_options_, decay_scope(config)),
      checkpoints_(parse_checkpoint_every(config.checkpoint_every)),
      schedule_(lr_schedule_options(config, global_batch_), position_.steps_per_epoch),
      gradient_communicator_(make_gradient_communicator(communicator, context_)),
      reducer_(*gradient_communicator_, store_.flat_grads().data<float>(), store_.flat_size(),
               {.bucket_bytes = static_cast<std::size_t>(config.bucket_mb * (1 << 20)),
                .overlap = config.overlap,
                // Every kernel loads (lazily) before NCCL overlaps anything.
                .overlap_first_step = context_.backend() != Backend::cuda}),
      arrivals_(communicator.make_arrival_board()),
      watchdog_(
          world_ > 1 ? config.comm_timeout : 0, communicator.rank(),
          {.on_timeout = [this] { end_job(communicator_, signals_); },
           .describe_stall =
               [this](int64_t step) { return describe_stall(*arrivals_, communicator_, step); },
           .still_waiting = [this](int64_t step) { arrivals_->arrived(step); }}),
      scaler_(config.precision == Precision::fp16),
      step_(step_parts()) {
  // Initialization, files and broadcasts work on the host copy (the model
  // itself on the CPU).
  initialize_parameters(shadow_.store(), config.seed);
  if (resume_.path.empty() && !config.init_weights.empty())
    init_account_ =
        load_initial_weights(config.init_weights, shadow_.store(),
                             {config.model, shape_.classes, shape_.channels, config.adapt_stem});
  broadcast_model(communicator, shadow_.store());
  if (!resume_.path.empty())
    load_checkpoint(resume_.path, shadow_.store(), shadow_.sgd(), config.model);
  shadow_.push();
  const CheckpointState& resumed = resume_.state;
  if (scaler_.enabled() && resumed.loss_scale > 0)
    scaler_.restore(resumed.loss_scale, resumed.loss_scale_good_steps, resumed.skipped_steps);
  state_ = resumed;
  state_.world_size = world_;
  state_.batch_size = config.batch_size;
  state_.accumulate = resume_.accumulate;
  state_.seed = static_cast<int64_t>(config.seed);
  state_.steps_per_epoch = position_.steps_per_epoch;
  state_.config = config_text;
  start_ema();
  if (root_) open_run_directory();
  interval_.restart(now(), loader_.wait_seconds());
}

// What the step runs on: this run's net, loss, optimizer, reducer, loader,
// watchdog, arrival board and stop signals.
TrainStepParts TrainingRun::step_parts() {
  return {.context = context_,
          .net = net_,
          .loss = nets_.loss(config_.batch_size, config_.label_smoothing),
          .store = store_,
          .sgd = sgd_,
          .reducer = reducer_,
          .communicator = communicator_,
          .scaler = scaler_,
          .next_batch = [this](Batch* batch) { loader_.next(batch); },
          .accumulate = resume_.accumulate,
          .watchdog = &watchdog_,
          .arrivals = arrivals_.get(),
          .stop_requested = [this] { return signals_.requested(); },
          .clip_grad_norm = config_.clip_grad_norm};
}

TrainResult TrainingRun::run() {
  for (int64_t step = position_.start_step; step < position_.total_steps; ++step) {
    const StepMetrics metrics = step_.run(plan(step));
    after_step(step, metrics);
    if (metrics.stop && step + 1 < position_.total_steps) {
      result_.stopped_early = true;
      if (progress_)
        progress_->message("stopped by a signal after step " + std::to_string(step + 1) +
                           "; checkpoint " + result_.checkpoint_path +
                           " (continue with --resume auto)");
      return result_;
    }
  }
  save_model();
  report_end();
  return result_;
}

// The run's last record and line: steps, time, the best validation top-1.
void TrainingRun::report_end() {
  if (!progress_) return;
  JsonLine record;
  record.add("kind", "end").add("step", result_.steps).add("time", now());
  std::string line = "finished at step " + std::to_string(result_.steps) + " after " +
                     format_duration(now()) + " (this start)";
  if (state_.best_step > 0) {
    const int64_t epoch = (state_.best_step - 1) / position_.steps_per_epoch + 1;
    record.add("best_top1", state_.best_top1).add("best_epoch", epoch);
    char best[96];
    std::snprintf(best, sizeof best, "; best validation top-1 %.2f%% (epoch %ld)",
                  100 * state_.best_top1, long(epoch));
    line += best;
  }
  progress_->record(record);
  progress_->message(line);
}

StepPlan TrainingRun::plan(int64_t step) const {
  return {.step = step,
          .epoch = step / position_.steps_per_epoch,
          .lr = schedule_.lr(step),
          .read_metrics = reads_metrics_every_step(config_.read_metrics, context_.backend()) ||
                          log_due(step) ||
                          checkpoints_.due_after(step + 1, position_.steps_per_epoch),
          .last = step + 1 == position_.total_steps};
}

bool TrainingRun::epoch_ends(int64_t step) const {
  return (step + 1) % position_.steps_per_epoch == 0 || step + 1 == position_.total_steps;
}

bool TrainingRun::log_due(int64_t step) const {
  return (step + 1) % config_.log_every == 0 || epoch_ends(step);
}

// Logs, evaluates at an epoch's end, and checkpoints on schedule, at the
// end, on a stop request or a new best.
void TrainingRun::after_step(int64_t step, const StepMetrics& metrics) {
  if (!metrics.applied) report_skipped_step(step, metrics);
  if (ema_ && metrics.applied) ema_->update();
  interval_.add(metrics);
  result_.steps = step + 1;
  if (metrics.read) log(step, metrics, log_due(step) ? slowest_data_wait(step) : 0);
  if (log_due(step)) interval_.restart(now(), loader_.wait_seconds());
  const bool new_best = epoch_ends(step) && val_data_ && evaluate(step);
  if (checkpoints_.due_after(step + 1, position_.steps_per_epoch) ||
      step + 1 == position_.total_steps || metrics.stop || new_best)
    checkpoint(step);
}

void TrainingRun::report_skipped_step(int64_t step, const StepMetrics& metrics) {
  if (!progress_) return;
  char line[192];
  std::snprintf(line, sizeof line,
                "step %ld: fp16 overflow in %s at loss scale %g; step skipped, scale now %g "
                "(%ld skipped so far)",
                long(step + 1),
                metrics.forward_overflow ? "forward (inf/NaN loss)" : "the gradients",
                metrics.loss_scale, scaler_.scale(), long(scaler_.skipped_steps()));
  progress_->status(line, true);
}

// The largest share of the log interval any rank waited for its data loader
// (every rank at every log line: one allreduce of one slot per rank).
double TrainingRun::slowest_data_wait(int64_t step) {
  std::vector<double> shares(static_cast<std::size_t>(world_), 0.0);
  const double span = std::max(1e-9, interval_.elapsed_s());
  shares[static_cast<std::size_t>(communicator_.rank())] =
      (loader_.wait_seconds() - interval_.start_wait_s) / span;
  if (world_ > 1) {
    Watchdog::Scope waiting(watchdog_, step + 1, "the data-wait allreduce");
    communicator_.allreduce(shares.data(), shares.size(), ReduceOp::sum);
  }
  return *std::max_element(shares.begin(), shares.end());
}

// The status line after every read; at log lines also a metrics record
// (data_wait there: the slowest rank's share of the interval).
void TrainingRun::log(int64_t step, const StepMetrics& metrics, double slowest_wait) {
  if (!progress_) return;
  const int64_t per_epoch = position_.steps_per_epoch;
  const double span = std::max(1e-9, now() - interval_.start_s);
  const double wait =
      log_due(step) ? slowest_wait * span : loader_.wait_seconds() - interval_.start_wait_s;
  const double img_per_s = interval_.samples / span;
  const double eta = (position_.total_steps - step - 1) * span / interval_.steps;
  const double loss = interval_.loss_sum / interval_.samples;
  const double top1 = interval_.top1 / interval_.samples;
  const double lr = schedule_.lr(step);
  char line[256];
  std::snprintf(line, sizeof line,
                "epoch %ld/%ld step %ld/%ld loss %.4f top1 %.2f%% %.1f img/s data-wait %.0f%% "
                "lr %.4g ETA %s",
                long(step / per_epoch + 1), long(config_.epochs), long(step % per_epoch + 1),
                long(per_epoch), loss, 100 * top1, img_per_s, 100 * wait / span, lr,
                format_duration(eta).c_str());
  progress_->status(line, log_due(step));
  if (!log_due(step)) return;
  result_.train_loss = loss;
  result_.train_top1 = top1;
  JsonLine record;
  record.add("kind", "train")
      .add("epoch", step / per_epoch + 1)
      .add("step", step + 1)
      .add("time", now())
      .add("loss", loss)
      .add("top1", top1)
      .add("top5", interval_.top5 / interval_.samples)
      .add("lr", lr)
      .add("img_per_s", img_per_s)
      .add("data_wait", wait / span)
      .add("exposed_comm_s", metrics.exposed_comm_s)
      .add("peak_rss_mib", peak_rss_mib());
  if (scaler_.enabled()) record.add("loss_scale", scaler_.scale());
  if (config_.clip_grad_norm > 0) record.add("grad_norm", metrics.grad_norm);  // of this step
  progress_->record(record);
}

// Evaluates the validation set on every rank (rank 0's BN statistics);
// returns true for a new best top-1.
bool TrainingRun::evaluate(int64_t step) {
  EvalTotals totals;
  {
    Watchdog::Scope waiting(watchdog_, step + 1, "the evaluation");
    Loader val_loader(val_data_, eval_options_);
    watchdog_.disarm();  // evaluating is local work
    totals = convnet::evaluate(nets_, val_loader);
    watchdog_.arm(step + 1, "the evaluation");
    totals.reduce(communicator_);
  }
  result_.evaluated = true;
  result_.val_loss = totals.loss();
  result_.val_top1 = totals.top1();
  result_.val_top5 = totals.top5();
  const int64_t epoch = step / position_.steps_per_epoch + 1;
  if (progress_) {
    char line[160];
    std::snprintf(line, sizeof line,
                  "epoch %ld validation: loss %.4f top1 %.2f%% top5 %.2f%% (%ld images)",
                  long(epoch), result_.val_loss, 100 * result_.val_top1, 100 * result_.val_top5,
                  long(totals.count));
    progress_->message(line);
    progress_->record(JsonLine()
                          .add("kind", "eval")
                          .add("epoch", epoch)
                          .add("step", step + 1)
                          .add("time", now())
                          .add("loss", result_.val_loss)
                          .add("top1", result_.val_top1)
                          .add("top5", result_.val_top5)
                          .add("count", int64_t(totals.count)));
  }
  if (root_) write_per_class(step, totals);
  if (ema_) evaluate_ema(step);
  interval_.restart(now(), loader_.wait_seconds());
  state_.val_top1 = result_.val_top1;
  state_.val_loss = result_.val_loss;
  if (result_.val_top1 <= state_.best_top1) return false;
  state_.best_top1 = result_.val_top1;
  state_.best_step = step + 1;  // kept by the retention rule, so it needs a checkpoint
  return true;
}

// run_dir/eval-<step>.json next to the evaluation's record: per-class
// top-1 and counts with the class names, and up to 100 classes the
// confusion matrix (trainer/evaluator.h); written to a temporary and renamed.
void TrainingRun::write_per_class(int64_t step, const EvalTotals& totals) const {
  JsonLine line;
  line.add("kind", "eval").add("epoch", step / position_.steps_per_epoch + 1).add("step", step + 1);
  line.add("top1", totals.top1()).add("count", int64_t(totals.count));
  add_per_class(line, totals, val_data_->info().class_names, totals.classes <= 100);
  char name[32];
  std::snprintf(name, sizeof name, "/eval-%09ld.json", long(step + 1));
  const std::string path = config_.run_dir + name, temp = path + ".tmp-" + std::to_string(getpid());
  std::ofstream out(temp);
  out << line.str() << "\n";
  out.close();
  CONVNET_CHECK(out.good(), "writing ", temp, " failed (disk full?)");
  fsync_and_rename(temp, path);
}

// Every rank (they hold the same values): a diverged model is never saved,
// even where its loss still looked finite (BN can hide infinite weights).
void TrainingRun::require_finite_model(int64_t step) {
  const bool finite =
      all_finite(context_, store_.flat_params()) &&
      (store_.flat_buffer_size() == 0 || all_finite(context_, store_.flat_buffers()));
  CONVNET_CHECK(finite, "the model's parameters or BN statistics are not finite (NaN or inf) at ",
                "step ", step, ": the run diverged; lower --lr or add --warmup-epochs; nothing ",
                "was saved at this step (earlier checkpoints are intact)");
}

void TrainingRun::checkpoint(int64_t step) {
  require_finite_model(step + 1);
  const int64_t done = step + 1;
  state_.global_step = done;
  state_.epoch = done / position_.steps_per_epoch;
  state_.step_in_epoch = done % position_.steps_per_epoch;
  state_.samples_seen = done * global_batch_;
  state_.sgd_steps = sgd_.step_count();
  state_.loss_scale = scaler_.enabled() ? scaler_.scale() : 0.0;
  state_.loss_scale_good_steps = scaler_.good_steps();
  state_.skipped_steps = scaler_.skipped_steps();
  if (root_) {
    const std::string path = checkpoint_path(config_.run_dir, done);
    std::optional<EmaValues> ema;
    if (ema_) ema = ema_values();
    shadow_.pull();
    save_checkpoint(path, metadata(), shadow_.store(), shadow_.sgd(), state_,
                    ema ? &*ema : nullptr);
    write_latest_pointer(config_.run_dir, path);
    prune_checkpoints(config_.run_dir, config_.keep, state_.best_step, done);
    result_.checkpoint_path = path;
  }
  // The other ranks wait here, not armed: writing may take longer than
  // --comm-timeout on a slow file system (rank 0 dying still ends the job).
  communicator_.barrier();
}

// The final model (every rank holds the same; rank 0 writes it).
void TrainingRun::save_model() {
  require_finite_model(state_.global_step);
  result_.model_path = config_.run_dir + "/model.h5";
  if (!root_) return;
  shadow_.pull();
  save_weights(result_.model_path, metadata(), shadow_.store());
  progress_->message("saved " + result_.model_path);
  if (!ema_) return;
  const std::string ema_path = config_.run_dir + "/model_ema.h5";
  ema_->swap_with_model();
  shadow_.pull();
  save_weights(ema_path, metadata(), shadow_.store());
  ema_->swap_with_model();
  shadow_.pull();
  progress_->message("saved " + ema_path + " (the weights' moving average)");
}

// The model EMA: a copy of the model at the start, or the resumed
// checkpoint's (loaded through the host store, which the device store then
// takes; the model itself is put back after).
void TrainingRun::start_ema() {
  if (!config_.model_ema) return;
  EmaValues saved;
  ParamStore& host = shadow_.store();
  const bool resumed = !resume_.path.empty() && read_checkpoint_ema(resume_.path, host, &saved);
  if (!resumed) {
    ema_ = std::make_unique<ModelEma>(context_, store_, config_.model_ema_decay,
                                      config_.model_ema_warmup);
    return;
  }
  const std::vector<float> params = host.flat_params().to_vector();
  const std::vector<float> buffers =
      host.flat_buffer_size() > 0 ? host.flat_buffers().to_vector() : std::vector<float>();
  copy_from_host(host.flat_params(), saved.params.data());
  if (!buffers.empty()) copy_from_host(host.flat_buffers(), saved.buffers.data());
  shadow_.push();
  ema_ = std::make_unique<ModelEma>(context_, store_, config_.model_ema_decay,
                                    config_.model_ema_warmup);
  ema_->set_updates(saved.updates);
  copy_from_host(host.flat_params(), params.data());
  if (!buffers.empty()) copy_from_host(host.flat_buffers(), buffers.data());
  shadow_.push();
}

// The average's host values, for a checkpoint (the model is put back after).
EmaValues TrainingRun::ema_values() {
  ema_->swap_with_model();
  shadow_.pull();
  ParamStore& host = shadow_.store();
  EmaValues values{
      host.flat_params().to_vector(),
      host.flat_buffer_size() > 0 ? host.flat_buffers().to_vector() : std::vector<float>(),
      ema_->updates()};
  ema_->swap_with_model();
  shadow_.pull();
  return values;
}

// The validation set on the average (every rank), recorded as eval_ema.
void TrainingRun::evaluate_ema(int64_t step) {
  EvalTotals totals;
  {
    Watchdog::Scope waiting(watchdog_, step + 1, "the EMA evaluation");
    Loader val_loader(val_data_, eval_options_);
    watchdog_.disarm();  // evaluating is local work
    ema_->swap_with_model();
    totals = convnet::evaluate(nets_, val_loader);
    ema_->swap_with_model();
    watchdog_.arm(step + 1, "the EMA evaluation");
    totals.reduce(communicator_);
  }
  if (!progress_) return;
  const int64_t epoch = step / position_.steps_per_epoch + 1;
  char line[160];
  std::snprintf(line, sizeof line, "epoch %ld validation (EMA): loss %.4f top1 %.2f%% top5 %.2f%%",
                long(epoch), totals.loss(), 100 * totals.top1(), 100 * totals.top5());
  progress_->message(line);
  progress_->record(JsonLine()
                        .add("kind", "eval_ema")
                        .add("epoch", epoch)
                        .add("step", step + 1)
                        .add("time", now())
                        .add("loss", totals.loss())
                        .add("top1", totals.top1())
                        .add("top5", totals.top5())
                        .add("count", int64_t(totals.count)));
}

void TrainingRun::open_run_directory() {
  std::error_code error;
  std::filesystem::create_directories(config_.run_dir, error);
  CONVNET_CHECK(!error, "cannot create run directory ", config_.run_dir, ": ", error.message());
  const std::string config_path = config_.run_dir + "/config.ini";
  check_output_file(config_path);
  std::ofstream config_file(config_path);
  config_file << config_text_;
  config_file.close();
  CONVNET_CHECK(config_file.good(), "writing ", config_path, " failed (disk full, or not a file?)");
  CONVNET_CHECK(std::filesystem::exists(config_path), "cannot write ", config_path);
  progress_ = std::make_unique<ProgressReporter>(config_.run_dir + "/metrics.jsonl",
                                                 config_.tensorboard ? config_.run_dir : "",
                                                 position_.start_step + 1);
  progress_->message(header());
  progress_->record(JsonLine()
                        .add("kind", "start")
                        .add("step", position_.start_step)
                        .add("epoch", position_.start_step / position_.steps_per_epoch + 1)
                        .add("ranks", int64_t(world_))
                        .add("accumulate", resume_.accumulate)
                        .add("global_batch", global_batch_)
                        .add("steps_per_epoch", position_.steps_per_epoch)
                        .add("model", config_.model)
                        .add("resumed_from", resume_.path)
                        .add("init_weights", init_account_.empty() ? "" : config_.init_weights));
  if (!init_account_.empty()) progress_->message(init_account_);
  const CheckpointState& resumed = resume_.state;
  if (!resume_.path.empty())
    progress_->message("resuming from " + resume_.path + " at step " +
                       std::to_string(position_.start_step) + " (epoch " +
                       std::to_string(resumed.epoch + 1) + "), made by " +
                       std::to_string(resumed.world_size) + " rank(s) x " +
                       std::to_string(resumed.accumulate) + " micro-batch(es)");
}

std::string TrainingRun::header() const {
  std::ostringstream text;
  text << "convnet train: " << config_.model << " (" << store_.num_parameters() << " parameters), "
       << train_data_->info().count << " training images " << loader_.height() << "x"
       << loader_.width() << "x" << shape_.channels << ", " << shape_.classes << " classes, recipe "
       << name_of(loader_options_.augment.recipe) << "\n"
       << "world " << world_ << " x batch " << config_.batch_size << " x accumulate "
       << resume_.accumulate << " = global batch " << global_batch_ << ", "
       << position_.steps_per_epoch << " steps/epoch, "
       << (context_.backend() == Backend::cuda ? "GPU " + std::to_string(context_.gpu_index())
                                               : std::to_string(threads_) + " threads")
       << "/rank, base lr " << lr_schedule_options(config_, global_batch_).base_lr << ", "
       << communicator_.describe() << "\n"
       << "activations " << (net_.activation_bytes() >> 20) << " MiB + pool "
       << (net_.pool_bytes() >> 20) << " MiB per rank\n--- resolved configuration ("
       << config_.run_dir << "/config.ini)\n"
       << config_text_ << "---";
  return text.str();
}

WeightsMetadata TrainingRun::metadata() const {
  WeightsMetadata metadata;
  metadata.model = config_.model;
  metadata.num_classes = shape_.classes;
  metadata.in_channels = shape_.channels;
  metadata.mean = loader_.mean();
  metadata.std = loader_.std();
  metadata.image_size = loader_.height();
  return metadata;
}

}  // namespace

TrainResult train(const TrainConfig& config, const std::string& config_text,
                  Communicator& communicator) {
  return TrainingRun(config, config_text, communicator).run();
}

}  // namespace convnet
