#include "trainer/trainer.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "comm/device_selection.h"
#include "comm/gradient_reducer.h"
#include "core/error.h"
#include "datasets/loader.h"
#include "datasets/sample_order.h"
#include "layers/sgd.h"
#include "models/weights_file.h"
#include "trainer/checkpoint.h"
#include "trainer/evaluator.h"
#include "trainer/host_shadow.h"
#include "trainer/input_feed.h"
#include "trainer/loss_scaler.h"
#include "trainer/lr_schedule.h"
#include "trainer/progress.h"
#include "trainer/stop_signals.h"
#include "trainer/watchdog.h"

namespace convnet {
namespace {

std::vector<double> parse_milestones(const std::string& text, int64_t epochs) {
  std::vector<double> milestones;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    if (item.empty()) continue;
    char* end = nullptr;
    const double value = std::strtod(item.c_str(), &end);
    CONVNET_CHECK(end && *end == '\0' && value > 0, "--milestones: '", item,
                  "' is not a positive number of epochs");
    milestones.push_back(value);
  }
  if (text.empty()) milestones = {epochs * 0.5, epochs * 0.75};  // decay once floor(e) passes them
  return milestones;
}

Recipe resolve_recipe(const std::string& name, const DatasetInfo& info) {
  if (name != "auto") return parse_recipe(name);
  if (info.layout == DatasetLayout::encoded) return Recipe::imagenet;
  return std::max(info.height, info.width) <= 64 ? Recipe::cifar : Recipe::none;
}

struct CheckpointSchedule {
  int64_t epochs = 0, steps = 0;  // one of them > 0
};

// "2" or "2epochs": every 2 epochs; "500steps": every 500 steps.
CheckpointSchedule parse_checkpoint_every(const std::string& text) {
  char* end = nullptr;
  const long long value = std::strtoll(text.c_str(), &end, 10);
  const std::string unit = end ? end : "";
  CONVNET_CHECK(end != text.c_str() && value > 0 &&
                    (unit.empty() || unit == "epochs" || unit == "epoch" || unit == "steps" ||
                     unit == "step"),
                "--checkpoint-every must be N, Nepochs or Nsteps with N > 0, got '", text, "'");
  CheckpointSchedule schedule;
  (unit.rfind("step", 0) == 0 ? schedule.steps : schedule.epochs) = value;
  return schedule;
}

std::string format_duration(double seconds) {
  const int64_t s = std::max<int64_t>(0, std::llround(seconds));
  char text[32];
  if (s >= 3600)
    std::snprintf(text, sizeof text, "%ldh%02ldm", long(s / 3600), long(s / 60 % 60));
  else
    std::snprintf(text, sizeof text, "%ldm%02lds", long(s / 60), long(s % 60));
  return text;
}

// Broadcasts parameters, BN buffers and counters from rank 0.
void broadcast_model(Communicator& communicator, ParamStore& store, bool parameters) {
  if (communicator.size() == 1) return;
  if (parameters)
    communicator.broadcast(store.flat_params().data<float>(), store.flat_size() * 4, 0);
  if (store.num_buffer_elements() > 0)
    communicator.broadcast(store.flat_buffers().data<float>(), store.flat_buffer_size() * 4, 0);
  if (!store.counters().empty())
    communicator.broadcast(store.counters().data(), store.counters().size() * 8, 0);
}

}  // namespace

TrainResult train(const TrainConfig& config, const std::string& config_text,
                  Communicator& communicator) {
  const bool root = communicator.rank() == 0;
  const int world = communicator.size();
  CONVNET_CHECK(config.epochs > 0, "--epochs must be positive, got ", config.epochs);
  CONVNET_CHECK(config.batch_size > 0, "--batch-size must be positive, got ", config.batch_size);
  CONVNET_CHECK(config.accumulate > 0, "--accumulate must be positive, got ", config.accumulate);
  CONVNET_CHECK(config.log_every > 0, "--log-every must be positive, got ", config.log_every);
  CONVNET_CHECK(config.read_metrics == "auto" || config.read_metrics == "step" ||
                    config.read_metrics == "log",
                "--read-metrics must be auto, step or log, got '", config.read_metrics, "'");
  CONVNET_CHECK(config.bucket_mb > 0, "--bucket-mb must be positive, got ", config.bucket_mb);
  CONVNET_CHECK(config.lr_scaling == "none" || config.lr_scaling == "linear",
                "--lr-scaling must be none or linear, got '", config.lr_scaling, "'");
  CONVNET_CHECK(config.label_smoothing >= 0 && config.label_smoothing < 1,
                "--label-smoothing must lie in [0, 1), got ", config.label_smoothing);
  model_info(config.model);  // an unknown name is an error listing the valid ones

  // ---- Data
  auto train_data = std::make_shared<Dataset>(config.train_data);
  const DatasetInfo& info = train_data->info();
  const int64_t channels = config.in_channels > 0 ? config.in_channels : info.channels;
  const int64_t classes = config.num_classes > 0 ? config.num_classes : info.num_classes;
  CONVNET_CHECK(channels == info.channels, "--in-channels ", channels, " but ", config.train_data,
                " has ", info.channels, "-channel images");
  CONVNET_CHECK(classes >= info.num_classes, "--num-classes ", classes, " but ", config.train_data,
                " has ", info.num_classes, " classes");
  // ---- Resume: the checkpoint decides the step, the data position and the
  // micro-batching (the global batch and per-replica micro-batch are kept).
  std::string resume_path = config.resume;
  if (config.resume == "auto") {
    resume_path = root ? find_resumable_checkpoint(config.run_dir) : "";
    communicator.broadcast(resume_path, 0);
  }
  CheckpointState resume;
  int64_t accumulate = config.accumulate;
  if (resume_path.empty() && root) {
    // A fresh run must not mix its checkpoints with an earlier run's: pruning
    // and --resume auto would take theirs for its own.
    const std::vector<std::string> earlier = list_checkpoints(config.run_dir);
    CONVNET_CHECK(earlier.empty(), config.run_dir, " already holds checkpoints of an earlier run (",
                  earlier.front(),
                  "): pass --resume auto to continue it, or choose another --run-dir");
  }
  if (!resume_path.empty()) {
    resume = read_checkpoint_state(resume_path);
    CONVNET_CHECK(static_cast<int64_t>(config.seed) == resume.seed, resume_path,
                  " was made with --seed ", resume.seed,
                  " (the data order and augmentation "
                  "follow it): resume with the same --seed, not ",
                  config.seed);
    const int64_t micro_batches = resume.world_size * resume.accumulate;
    if (!config.allow_changed_micro_batch) {
      CONVNET_CHECK(
          config.batch_size == resume.batch_size, resume_path, " was made with --batch-size ",
          resume.batch_size, " per micro-batch; resuming with ", config.batch_size,
          " changes BN statistics and the data order (pass --allow-changed-micro-batch to "
          "accept)");
      CONVNET_CHECK(
          micro_batches % world == 0, resume_path, " was made by ", resume.world_size,
          " rank(s) x ", resume.accumulate, " micro-batch(es) per step: ", world,
          " ranks do not divide its ", micro_batches,
          " micro-batches (pass --allow-changed-micro-batch to accept another global batch)");
      accumulate = micro_batches / world;
    }
  }
  const std::string layout =
      resolve_layout(config.layout, parse_backend(config.device), config.precision);
  const ModelSpec model_spec{.name = config.model,
                             .num_classes = classes,
                             .in_channels = channels,
                             .memory_efficient = config.memory_efficient,
                             .blocked_layout = runs_blocked(layout),
                             .channels_last = layout == "nhwc"};
  // Channels-last GPU models take NHWC batches, straight from the loader.
  const bool nhwc_batches =
      model_input_layout(parse_backend(config.device), model_spec) == Layout::nhwc;
  LoaderOptions loader_options;
  loader_options.augment.channels_last = nhwc_batches;
  loader_options.augment.recipe = resolve_recipe(config.recipe, info);
  loader_options.augment.size = config.crop;
  loader_options.augment.seed = config.seed;
  loader_options.batch_size = config.batch_size;
  loader_options.world = world;
  loader_options.rank = communicator.rank();
  loader_options.accumulate = accumulate;
  loader_options.threads = config.loader_threads;
  loader_options.prefetch = std::max(4, 2 * config.loader_threads);
  loader_options.skip_corrupt = config.skip_corrupt;
  // The position in the epoch, in steps of this run's global batch (the same
  // as the checkpoint's unless --allow-changed-micro-batch changed it).
  const int64_t steps_per_epoch =
      convnet::steps_per_epoch(info.count, world * accumulate, config.batch_size);
  int64_t step_in_epoch = resume.step_in_epoch;
  if (!resume_path.empty()) {
    const int64_t old_global = resume.batch_size * resume.world_size * resume.accumulate;
    const int64_t new_global = config.batch_size * world * accumulate;
    CONVNET_CHECK(old_global != new_global || resume.steps_per_epoch == steps_per_epoch,
                  resume_path, " has ", resume.steps_per_epoch, " steps per epoch, ",
                  config.train_data, " now gives ", steps_per_epoch,
                  ": the training data changed since the checkpoint");
    step_in_epoch = resume.step_in_epoch * old_global / new_global;  // samples seen, rounded down
  }
  const int64_t start_step = resume.epoch * steps_per_epoch + step_in_epoch;
  Loader loader(train_data, loader_options, {resume.epoch, step_in_epoch * accumulate});
  int64_t total_steps = steps_per_epoch * config.epochs;
  if (config.max_steps > 0) total_steps = std::min(total_steps, config.max_steps);

  std::shared_ptr<Dataset> val_data;
  if (!config.val_data.empty()) {
    val_data = std::make_shared<Dataset>(config.val_data);
    CONVNET_CHECK(val_data->info().channels == channels && val_data->info().num_classes <= classes,
                  config.val_data, ": channels or classes do not match ", config.train_data);
  }
  LoaderOptions eval_options = loader_options;
  eval_options.train = false;
  eval_options.batch_size = config.eval_batch_size > 0 ? config.eval_batch_size : config.batch_size;
  eval_options.augment.mean = loader.mean();  // the training set's normalization
  eval_options.augment.std = loader.std();
  eval_options.augment.size = loader.height();
  if (eval_options.augment.recipe == Recipe::imagenet && val_data &&
      val_data->info().layout == DatasetLayout::raw && val_data->info().height == loader.height() &&
      val_data->info().width == loader.width())
    eval_options.augment.recipe = Recipe::none;  // already at the model's input size

  // ---- Model, optimizer, communication
  const int threads = config.threads > 0 ? config.threads : cores_per_local_rank(communicator);
  Context context(context_options_for_rank(parse_backend(config.device), threads, config.precision,
                                           layout, communicator));
  ParamStore store;
  const ModelSpec spec = model_spec;
  ModelNets nets(context, spec, store, channels, loader.height(), loader.width());
  Net& net = nets.get(config.batch_size);
  SoftmaxCrossEntropy& loss = nets.loss(config.batch_size, config.label_smoothing);
  const SgdOptions sgd_options{.momentum = config.momentum,
                               .weight_decay = config.weight_decay,
                               .nesterov = config.nesterov};
  Sgd sgd(context, sgd_options, store.decay_segments(config.no_bn_decay), store.flat_size());
  // Initialization, files and broadcasts work on the host copy (the model
  // itself on the CPU).
  HostShadow shadow(store, sgd, sgd_options, config.no_bn_decay);
  initialize_parameters(shadow.store(), config.seed);
  broadcast_model(communicator, shadow.store(), true);
  if (!resume_path.empty())
    load_checkpoint(resume_path, shadow.store(), shadow.sgd(), config.model);
  shadow.push();
  // Rank 0's BN statistics everywhere (before evaluating and saving).
  const auto share_bn_statistics = [&] {
    if (world == 1) return;
    shadow.pull();
    broadcast_model(communicator, shadow.store(), false);
    shadow.push();
  };
  const CheckpointSchedule checkpoints = parse_checkpoint_every(config.checkpoint_every);
  CONVNET_CHECK(config.keep > 0, "--keep must be positive, got ", config.keep);
  const int64_t global_batch = config.batch_size * world * accumulate;
  LrScheduleOptions schedule_options;
  schedule_options.kind = parse_lr_schedule(config.schedule);
  schedule_options.base_lr =
      config.lr * (config.lr_scaling == "linear" ? global_batch / 256.0 : 1.0);
  schedule_options.warmup_epochs = config.warmup_epochs;
  schedule_options.milestones = parse_milestones(config.milestones, config.epochs);
  schedule_options.step_size = config.step_size;
  schedule_options.gamma = config.gamma;
  schedule_options.epochs = config.epochs;
  const LrSchedule schedule(schedule_options, steps_per_epoch);
  auto gradient_communicator = make_gradient_communicator(communicator, context);
  GradientReducer reducer(*gradient_communicator, store.flat_grads().data<float>(),
                          store.flat_size(),
                          {.bucket_bytes = static_cast<std::size_t>(config.bucket_mb * (1 << 20)),
                           .overlap = config.overlap,
                           // Every kernel loads (lazily) before NCCL overlaps anything.
                           .overlap_first_step = context.backend() != Backend::cuda});

  // ---- Run directory and output (rank 0)
  std::unique_ptr<ProgressReporter> progress;
  if (root) {
    std::error_code error;
    std::filesystem::create_directories(config.run_dir, error);
    CONVNET_CHECK(!error, "cannot create run directory ", config.run_dir, ": ", error.message());
    const std::string config_path = config.run_dir + "/config.ini";
    std::ofstream(config_path) << config_text;
    CONVNET_CHECK(std::filesystem::exists(config_path), "cannot write ", config_path);
    progress = std::make_unique<ProgressReporter>(config.run_dir + "/metrics.jsonl");
    std::ostringstream header;
    header << "convnet train: " << config.model << " (" << store.num_parameters()
           << " parameters), " << info.count << " training images " << loader.height() << "x"
           << loader.width() << "x" << channels << ", " << classes << " classes, recipe "
           << recipe_name(loader_options.augment.recipe) << "\n"
           << "world " << world << " x batch " << config.batch_size << " x accumulate "
           << accumulate << " = global batch " << global_batch << ", " << steps_per_epoch
           << " steps/epoch, "
           << (context.backend() == Backend::cuda ? "GPU " + std::to_string(context.gpu_index())
                                                  : std::to_string(threads) + " threads")
           << "/rank, base lr " << schedule_options.base_lr << ", " << communicator.describe()
           << "\n"
           << "activations " << (net.activation_bytes() >> 20) << " MiB + pool "
           << (net.pool_bytes() >> 20) << " MiB per rank\n--- resolved configuration ("
           << config_path << ")\n"
           << config_text << "---";
    progress->message(header.str());
    if (!resume_path.empty())
      progress->message("resuming from " + resume_path + " at step " + std::to_string(start_step) +
                        " (epoch " + std::to_string(resume.epoch + 1) + "), made by " +
                        std::to_string(resume.world_size) + " rank(s) x " +
                        std::to_string(resume.accumulate) + " micro-batch(es)");
  }
  const auto make_metadata = [&] {
    WeightsMetadata metadata;
    metadata.model = config.model;
    metadata.num_classes = classes;
    metadata.in_channels = channels;
    metadata.mean = loader.mean();
    metadata.std = loader.std();
    metadata.image_size = loader.height();
    return metadata;
  };
  CheckpointState state = resume;
  state.world_size = world;
  state.batch_size = config.batch_size;
  state.accumulate = accumulate;
  state.seed = static_cast<int64_t>(config.seed);
  state.steps_per_epoch = steps_per_epoch;
  state.config = config_text;
  StopSignals signals;
  Watchdog watchdog(world > 1 ? config.comm_timeout : 0, communicator.rank(),
                    [&communicator] { communicator.abort(1); });

  // fp16: dynamic loss scaling, resumed exactly from the checkpoint's state.
  LossScaler scaler(config.precision == "fp16");
  if (scaler.enabled() && resume.loss_scale > 0)
    scaler.restore(resume.loss_scale, resume.loss_scale_good_steps, resume.skipped_steps);

  // ---- Training loop
  TrainResult result;
  double interval_stats[4] = {0, 0, 0, 0};  // loss sum, correct top-1, correct top-5, samples
  double interval_start = progress ? progress->elapsed() : 0;
  int64_t interval_steps = 0;
  double last_wait = loader.wait_seconds();
  // Micro-batch k + 1 is fetched and (on the GPU) on its way to the device
  // while k computes; the loader's sequence is the same either way.
  InputFeed feed(context, net.input());
  Batch batch, next_batch;
  bool prefetched = false;
  // A prefetch that failed (a corrupt sample, an I/O error) is reported
  // where that micro-batch is used, so the step before it still completes,
  // evaluates, checkpoints or stops as it would have.
  std::exception_ptr prefetch_error;
  // Metrics read every step, or kept (on the GPU: on the device) between
  // reads (below); the steps and samples since the last read.
  const bool read_every_step =
      config.read_metrics == "step" || scaler.enabled() ||
      (config.read_metrics == "auto" && context.backend() != Backend::cuda);
  int64_t unread_from_step = start_step;
  double unread_samples = 0;
  for (int64_t step = start_step; step < total_steps; ++step) {
    const int64_t epoch = step / steps_per_epoch;
    store.zero_grads();
    reducer.begin_step();
    // loss sum, correct top-1, correct top-5, samples, non-finite losses, stop requests
    double step_stats[6] = {0, 0, 0, 0, 0, 0};
    for (int64_t a = 0; a < accumulate; ++a) {
      if (prefetch_error) std::rethrow_exception(prefetch_error);
      if (!prefetched) {
        loader.next(&next_batch);
        feed.stage(next_batch.images);
      }
      std::swap(batch, next_batch);
      feed.commit(batch.images);
      prefetched = false;
      net.forward(Mode::training);
      // Loss and top-k counts accumulate where the loss is computed (on the
      // GPU without waiting for it); read after the step where needed (below).
      loss.forward_accumulate(net.output(), batch.labels);
      unread_samples += batch.count;
      loss.backward(net.output_grad());
      // The mean over micro-batches, times the fp16 loss scale (a power of two).
      const double factor = scaler.scale() / static_cast<double>(accumulate);
      if (factor != 1.0) scale_in_place(net.output_grad(), static_cast<float>(factor));
      if (a + 1 == accumulate)
        net.backward([&](int64_t ready) { reducer.mark_ready(static_cast<std::size_t>(ready)); });
      else
        net.backward();
      if (step + 1 < total_steps || a + 1 < accumulate) {  // none past the run's last
        try {
          loader.next(&next_batch);
          feed.stage(next_batch.images);
          prefetched = true;
        } catch (...) {
          prefetch_error = std::current_exception();
        }
      }
    }
    // Reading the metrics waits for the GPU. The CPU reads them every step,
    // so that a non-finite loss stops the run before the weights are
    // updated; so does fp16 (its loss scaler decides every step whether the
    // update is applied, as PyTorch's GradScaler). Otherwise the GPU runs
    // ahead and they are read only where the loop needs them: a log line,
    // an epoch's end, a checkpoint, a stop, the last step. A non-finite loss
    // then stops the run there, before anything is saved (--read-metrics).
    const bool epoch_end = (step + 1) % steps_per_epoch == 0 || step + 1 == total_steps;
    const bool log_now = (step + 1) % config.log_every == 0 || epoch_end;
    const bool scheduled_checkpoint =
        (checkpoints.steps > 0 && (step + 1) % checkpoints.steps == 0) ||
        (checkpoints.epochs > 0 && (step + 1) % steps_per_epoch == 0 &&
         ((step + 1) / steps_per_epoch) % checkpoints.epochs == 0);
    bool read_metrics = read_every_step || log_now || scheduled_checkpoint;
    {
      Watchdog::Scope waiting(watchdog, step + 1, "the gradient allreduce");
      reducer.finish();
      step_stats[5] = signals.requested() ? 1 : 0;
      if (!read_metrics) {  // every rank takes the same branches: the sums agree
        communicator.allreduce(step_stats + 5, 1, ReduceOp::sum);
        read_metrics = step_stats[5] > 0;
      }
      if (read_metrics) {
        const SoftmaxCrossEntropy::Metrics metrics = loss.take_metrics();
        step_stats[0] = metrics.loss_sum;
        step_stats[1] = static_cast<double>(metrics.top1);
        step_stats[2] = static_cast<double>(metrics.top5);
        step_stats[3] = unread_samples;
        step_stats[4] = static_cast<double>(metrics.nonfinite);
        step_stats[5] = signals.requested() || step_stats[5] > 0 ? 1 : 0;
        communicator.allreduce(step_stats, 6, ReduceOp::sum);
      }
    }
    // fp16: an overflow in forward (an activation beyond 65504) skips the
    // step instead (below); the loss scaler stops the run if it persists.
    if (step_stats[4] != 0 && !scaler.enabled()) {
      const bool this_step = unread_from_step == step;  // else read last before unread_from_step
      throw Error(detail::concat("non-finite loss ", this_step ? "at step " : "in steps ",
                                 this_step ? "" : std::to_string(unread_from_step + 1) + "-",
                                 step + 1, " (epoch ", epoch + 1, ") on ", int64_t(step_stats[4]),
                                 " micro-batch(es); stopping before ",
                                 this_step ? "the weights are updated" : "anything is saved",
                                 " (lower --lr, or add --warmup-epochs)"));
    }
    if (read_metrics) {
      unread_from_step = step + 1;
      unread_samples = 0;
    }
    const double lr = schedule.lr(step);
    // Averaged gradients and the summed stats are identical on every rank:
    // every rank skips alike.
    const double loss_scale = scaler.scale();
    const bool forward_overflow = scaler.enabled() && step_stats[4] > 0;
    bool apply = true;
    if (forward_overflow) {  // the loss scale cannot help: skipped, scale kept
      scaler.skip_forward_overflow();
      apply = false;
    } else if (scaler.enabled()) {
      apply = scaler.update(all_finite(context, store.flat_grads()));
    }
    if (apply) {
      sgd.step(store.flat_params(), store.flat_grads(), lr, 1.0 / loss_scale);
    } else if (progress) {
      char line[192];
      std::snprintf(line, sizeof line,
                    "step %ld: fp16 overflow in %s at loss scale %g; step skipped, scale now %g "
                    "(%ld skipped so far)",
                    long(step + 1), forward_overflow ? "forward (inf/NaN loss)" : "the gradients",
                    loss_scale, scaler.scale(), long(scaler.skipped_steps()));
      progress->status(line, true);
    }
    for (int k = 0; k < 4; ++k) interval_stats[k] += step_stats[k];
    ++interval_steps;
    result.steps = step + 1;

    bool new_best = false;
    if (progress && read_metrics) {
      const double now = progress->elapsed();
      const double span = std::max(1e-9, now - interval_start);
      const double wait = loader.wait_seconds() - last_wait;
      const double img_per_s = interval_stats[3] / span;
      const double eta = (total_steps - step - 1) * span / interval_steps;
      char line[256];
      std::snprintf(line, sizeof line,
                    "epoch %ld/%ld step %ld/%ld loss %.4f top1 %.2f%% %.1f img/s data-wait %.0f%% "
                    "lr %.4g ETA %s",
                    long(epoch + 1), long(config.epochs), long(step % steps_per_epoch + 1),
                    long(steps_per_epoch), interval_stats[0] / interval_stats[3],
                    100 * interval_stats[1] / interval_stats[3], img_per_s, 100 * wait / span, lr,
                    format_duration(eta).c_str());
      progress->status(line, log_now);
      if (log_now) {
        result.train_loss = interval_stats[0] / interval_stats[3];
        result.train_top1 = interval_stats[1] / interval_stats[3];
        progress->record(JsonLine()
                             .add("kind", std::string("train"))
                             .add("epoch", epoch + 1)
                             .add("step", step + 1)
                             .add("time", now)
                             .add("loss", result.train_loss)
                             .add("top1", result.train_top1)
                             .add("top5", interval_stats[2] / interval_stats[3])
                             .add("lr", lr)
                             .add("img_per_s", img_per_s)
                             .add("data_wait", wait / span)
                             .add("exposed_comm_s", reducer.last_step().exposed_s));
      }
    }
    if (log_now) {
      std::fill(interval_stats, interval_stats + 4, 0.0);
      interval_steps = 0;
      interval_start = progress ? progress->elapsed() : 0;
      last_wait = loader.wait_seconds();
    }

    if (epoch_end && val_data) {
      Watchdog::Scope waiting(watchdog, step + 1, "the evaluation");
      share_bn_statistics();
      Loader val_loader(val_data, eval_options);
      watchdog.disarm();  // evaluating is local work
      EvalTotals totals = evaluate(nets, val_loader);
      watchdog.arm(step + 1, "the evaluation");
      totals.reduce(communicator);
      result.evaluated = true;
      result.val_loss = totals.loss();
      result.val_top1 = totals.top1();
      result.val_top5 = totals.top5();
      if (progress) {
        char line[160];
        std::snprintf(line, sizeof line,
                      "epoch %ld validation: loss %.4f top1 %.2f%% top5 %.2f%% (%ld images)",
                      long(epoch + 1), result.val_loss, 100 * result.val_top1,
                      100 * result.val_top5, long(totals.count));
        progress->message(line);
        progress->record(JsonLine()
                             .add("kind", std::string("eval"))
                             .add("epoch", epoch + 1)
                             .add("step", step + 1)
                             .add("time", progress->elapsed())
                             .add("loss", result.val_loss)
                             .add("top1", result.val_top1)
                             .add("top5", result.val_top5)
                             .add("count", int64_t(totals.count)));
      }
      interval_start = progress ? progress->elapsed() : 0;
      last_wait = loader.wait_seconds();
      state.val_top1 = result.val_top1;
      state.val_loss = result.val_loss;
      if (result.val_top1 > state.best_top1) {
        state.best_top1 = result.val_top1;
        state.best_step = step + 1;
        new_best = true;  // kept by the retention rule, so it needs a checkpoint
      }
    }

    // ---- Checkpoint: on schedule, at the end, or when a signal asked to stop
    const bool stop = step_stats[5] > 0;
    const bool due = scheduled_checkpoint || step + 1 == total_steps || stop || new_best;
    if (due) {
      state.global_step = step + 1;
      state.epoch = (step + 1) / steps_per_epoch;
      state.step_in_epoch = (step + 1) % steps_per_epoch;
      state.samples_seen = (step + 1) * global_batch;
      state.sgd_steps = sgd.step_count();
      state.loss_scale = scaler.enabled() ? scaler.scale() : 0.0;
      state.loss_scale_good_steps = scaler.good_steps();
      state.skipped_steps = scaler.skipped_steps();
      {
        Watchdog::Scope waiting(watchdog, step + 1, "the checkpoint broadcast");
        share_bn_statistics();
      }
      if (root) {
        const std::string path = checkpoint_path(config.run_dir, step + 1);
        shadow.pull();
        save_checkpoint(path, make_metadata(), shadow.store(), shadow.sgd(), state);
        write_latest_pointer(config.run_dir, path);
        prune_checkpoints(config.run_dir, config.keep, state.best_step, step + 1);
        result.checkpoint_path = path;
      }
      // The other ranks wait here, not armed: writing may take longer than
      // --comm-timeout on a slow file system (rank 0 dying still ends the job).
      communicator.barrier();
    }
    if (stop && step + 1 < total_steps) {
      result.stopped_early = true;
      if (progress)
        progress->message("stopped by a signal after step " + std::to_string(step + 1) +
                          "; checkpoint " + result.checkpoint_path +
                          " (continue with --resume auto)");
      return result;
    }
  }

  // ---- Final model (rank 0's BN statistics)
  share_bn_statistics();
  result.model_path = config.run_dir + "/model.h5";
  if (root) {
    shadow.pull();
    save_weights(result.model_path, make_metadata(), shadow.store());
    progress->message("saved " + result.model_path);
  }
  return result;
}

}  // namespace convnet
