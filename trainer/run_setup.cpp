#include "trainer/run_setup.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "core/context.h"
#include "core/error.h"
#include "datasets/sample_order.h"

namespace convnet {
namespace {

std::vector<double> parse_milestones(const std::string& text, int64_t epochs) {
  std::vector<double> milestones;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    CONVNET_CHECK(!item.empty(), "--milestones '", text, "' has an empty item");
    char* end = nullptr;
    const double value = std::strtod(item.c_str(), &end);
    CONVNET_CHECK(end && *end == '\0' && std::isfinite(value) && value > 0, "--milestones: '", item,
                  "' is not a positive number of epochs");
    CONVNET_CHECK(milestones.empty() || value > milestones.back(), "--milestones '", text,
                  "' must increase");
    milestones.push_back(value);
  }
  if (text.empty()) milestones = {epochs * 0.5, epochs * 0.75};  // decay once floor(e) passes them
  return milestones;
}

// auto: imagenet for encoded images, cifar for raw ones from 8x8 to 64x64
// (smaller ones would be mostly padding), none otherwise.
Recipe resolve_recipe(std::optional<Recipe> recipe, const DatasetInfo& info,
                      const std::string& path) {
  const int64_t smaller = std::min(info.height, info.width);
  CONVNET_CHECK(!recipe || *recipe != Recipe::cifar || info.layout == DatasetLayout::encoded ||
                    smaller >= kCifarMinSize,
                "--recipe cifar pads ", kCifarPadding, " pixels and crops, which needs images of ",
                "at least ", kCifarMinSize, "x", kCifarMinSize, "; ", path, " holds ", info.height,
                "x", info.width, " images, whose crops would be mostly padding (batch norm ",
                "then makes the gradients explode): use --recipe none");
  if (recipe) return *recipe;
  if (info.layout == DatasetLayout::encoded) return Recipe::imagenet;
  const bool cifar_sized = std::max(info.height, info.width) <= 64 && smaller >= kCifarMinSize;
  return cifar_sized ? Recipe::cifar : Recipe::none;
}

// The checkpoint a run resumes from ("" for a fresh start), the same on
// every rank. A fresh run must not mix its checkpoints with an earlier run's:
// pruning and --resume auto would take theirs for its own.
std::string resume_path(const TrainConfig& config, Communicator& communicator) {
  const bool root = communicator.rank() == 0;
  std::string path = config.resume;
  if (config.resume == "auto") {
    path = root ? find_resumable_checkpoint(config.run_dir) : "";
    communicator.broadcast(path, 0);
  }
  if (path.empty() && root) {
    const std::vector<std::string> earlier = list_checkpoints(config.run_dir);
    CONVNET_CHECK(
        earlier.empty() || config.resume != "auto", "every checkpoint in ", config.run_dir,
        " is damaged (the warnings above say how; newest: ", earlier.empty() ? "" : earlier.front(),
        "), so there is nothing to resume: move them away to start afresh in this "
        "directory, or choose another --run-dir");
    CONVNET_CHECK(earlier.empty(), config.run_dir, " already holds checkpoints of an earlier run (",
                  earlier.front(),
                  "): pass --resume auto to continue it, or choose another --run-dir");
  }
  return path;
}

// The micro-batches per rank and step that keep the checkpoint's global batch.
int64_t resumed_accumulate(const TrainConfig& config, const ResumePlan& plan, int world) {
  const CheckpointState& state = plan.state;
  if (config.allow_changed_micro_batch) return config.accumulate;
  CONVNET_CHECK(config.batch_size == state.batch_size, plan.path, " was made with --batch-size ",
                state.batch_size, " per micro-batch; resuming with ", config.batch_size,
                " changes BN statistics and the data order (pass --allow-changed-micro-batch to "
                "accept)");
  const int64_t micro_batches = state.world_size * state.accumulate;
  CONVNET_CHECK(micro_batches % world == 0, plan.path, " was made by ", state.world_size,
                " rank(s) x ", state.accumulate, " micro-batch(es) per step: ", world,
                " ranks do not divide its ", micro_batches,
                " micro-batches (pass --allow-changed-micro-batch to accept another global batch)");
  return micro_batches / world;
}

}  // namespace

int max_loader_threads() { return std::max(16, 4 * machine_cpus()); }

namespace {

bool finite_at_least(double value, double low) { return std::isfinite(value) && value >= low; }

void check_optimization_options(const TrainConfig& config) {
  parse_milestones(config.milestones, config.epochs);  // before anything is written
  CONVNET_CHECK(std::isfinite(config.lr) && config.lr > 0, "--lr must be a positive number, got ",
                config.lr);
  CONVNET_CHECK(config.bn_momentum > 0 && config.bn_momentum <= 1,
                "--bn-momentum must lie in (0, 1], got ", config.bn_momentum);
  CONVNET_CHECK(!config.model_ema || (config.model_ema_decay > 0 && config.model_ema_decay < 1),
                "--model-ema-decay must lie in (0, 1), got ", config.model_ema_decay);
  CONVNET_CHECK(std::isfinite(config.clip_grad_norm) && config.clip_grad_norm >= 0,
                "--clip-grad-norm must be a non-negative number, got ", config.clip_grad_norm);
  CONVNET_CHECK(config.clip_grad_norm == 0 || config.device == Backend::cpu,
                "--clip-grad-norm runs on the CPU only so far (the GPU backend has no norm "
                "kernel yet)");
  for (const auto& [name, alpha] :
       {std::pair<const char*, double>{"--mixup-alpha", config.mixup_alpha},
        {"--cutmix-alpha", config.cutmix_alpha}})
    CONVNET_CHECK(std::isfinite(alpha) && alpha >= 0 && alpha <= 1000, name,
                  " must lie in [0, 1000] (0: off), got ", alpha);
  for (const auto& [name, p] : {std::pair<const char*, double>{"--mix-prob", config.mix_prob},
                                {"--mix-switch-prob", config.mix_switch_prob}})
    CONVNET_CHECK(p >= 0 && p <= 1, name, " must lie in [0, 1], got ", p);
  CONVNET_CHECK(config.random_erase >= 0 && config.random_erase <= 1,
                "--random-erase must lie in [0, 1], got ", config.random_erase);
  CONVNET_CHECK(std::isfinite(config.lr_min) && config.lr_min >= 0 && config.lr_min < config.lr,
                "--lr-min must lie in [0, --lr), got ", config.lr_min);
  CONVNET_CHECK(finite_at_least(config.momentum, 0) && config.momentum < 1,
                "--momentum must lie in [0, 1), got ", config.momentum);
  CONVNET_CHECK(finite_at_least(config.weight_decay, 0),
                "--weight-decay must be a number >= 0, got ", config.weight_decay);
  CONVNET_CHECK(std::isfinite(config.gamma) && config.gamma > 0,
                "--gamma must be a positive number, got ", config.gamma);
  CONVNET_CHECK(std::isfinite(config.step_size) && config.step_size > 0,
                "--step-size must be a positive number of epochs, got ", config.step_size);
  CONVNET_CHECK(finite_at_least(config.warmup_epochs, 0),
                "--warmup-epochs must be a number >= 0, got ", config.warmup_epochs);
  CONVNET_CHECK(config.max_steps >= 0, "--max-steps must be >= 0 (0: every epoch), got ",
                config.max_steps);
}

// Sizes and the machine's resources: a negative size, or more threads than
// this machine can run, is refused naming the limit.
void check_system_options(const TrainConfig& config) {
  check_thread_count(config.threads);
  CONVNET_CHECK(config.in_channels >= 0, "--in-channels must be >= 0 (0: the dataset's), got ",
                config.in_channels);
  CONVNET_CHECK(config.num_classes >= 0, "--num-classes must be >= 0 (0: the dataset's), got ",
                config.num_classes);
  CONVNET_CHECK(config.crop >= 0 && config.crop <= 16384,
                "--crop must lie in [0, 16384] (0: 224), got ", config.crop);
  CONVNET_CHECK(config.eval_batch_size >= 0,
                "--eval-batch-size must be >= 0 (0: --batch-size), got ", config.eval_batch_size);
  CONVNET_CHECK(std::isfinite(config.comm_timeout) && config.comm_timeout > 0,
                "--comm-timeout must be a positive number of seconds, got ", config.comm_timeout);
  CONVNET_CHECK(config.loader_threads >= 1 && config.loader_threads <= max_loader_threads(),
                "--loader-threads must lie in [1, ", max_loader_threads(),
                "] (4 per CPU, at least 16), got ", config.loader_threads);
}

}  // namespace

void check_train_config(const TrainConfig& config) {
  check_optimization_options(config);
  check_system_options(config);
  CONVNET_CHECK(config.epochs > 0, "--epochs must be positive, got ", config.epochs);
  CONVNET_CHECK(config.batch_size > 0, "--batch-size must be positive, got ", config.batch_size);
  CONVNET_CHECK(config.accumulate > 0, "--accumulate must be positive, got ", config.accumulate);
  CONVNET_CHECK(config.log_every > 0, "--log-every must be positive, got ", config.log_every);
  CONVNET_CHECK(config.bucket_mb > 0, "--bucket-mb must be positive, got ", config.bucket_mb);
  CONVNET_CHECK(config.label_smoothing >= 0 && config.label_smoothing < 1,
                "--label-smoothing must lie in [0, 1), got ", config.label_smoothing);
  CONVNET_CHECK(config.drop_path >= 0 && config.drop_path < 1,
                "--drop-path must lie in [0, 1), got ", config.drop_path);
  CONVNET_CHECK(config.keep > 0, "--keep must be positive, got ", config.keep);
}

namespace {

// The bytes of 16 samples spread over the dataset: ranks given files with
// the same header and labels but other images disagree here, at the cost
// of 16 reads (not the whole dataset).
uint64_t sampled_image_fingerprint(const Dataset& train) {
  const int64_t count = train.size();
  uint64_t hash = 0;
  for (int64_t k = 0; k < 16; ++k) {
    const int64_t index = k * count / 16;
    const Image image = train.load(index);
    hash = fingerprint(image.pixels.data(), image.pixels.size(),
                       hash ^ (0x9e3779b97f4a7c15ULL + uint64_t(k)));
  }
  return hash;
}

}  // namespace

RankFacts training_facts(const std::string& config_text, const Dataset& train) {
  RankFacts facts;
  std::istringstream in(config_text);
  for (std::string line; std::getline(in, line);) {
    const std::size_t eq = line.find(" = ");
    if (eq == std::string::npos) continue;
    const std::string key = line.substr(0, eq);
    if (key == "train-data" || key == "val-data" || key == "threads" || key == "loader-threads")
      continue;
    facts.emplace_back("--" + key, line.substr(eq + 3));
  }
  const DatasetInfo& info = train.info();
  std::ostringstream normalization;
  normalization.precision(17);
  for (std::size_t k = 0; k < train.mean().size(); ++k)
    normalization << (k ? " " : "") << train.mean()[k] << "/" << train.std()[k];
  std::string names;
  for (const std::string& name : info.class_names) names += name + '\n';
  const std::vector<int64_t>& labels = train.labels();
  facts.insert(facts.end(),
               {{"training samples", std::to_string(info.count)},
                {"training image shape (HxWxC; 0: encoded)", std::to_string(info.height) + "x" +
                                                                 std::to_string(info.width) + "x" +
                                                                 std::to_string(info.channels)},
                {"training data layout", info.layout == DatasetLayout::raw ? "raw" : "encoded"},
                {"training classes", std::to_string(info.num_classes)},
                {"training class names (fingerprint)",
                 std::to_string(fingerprint(names.data(), names.size()))},
                {"training labels (fingerprint)",
                 std::to_string(fingerprint(labels.data(), labels.size() * sizeof(int64_t)))},
                {"training normalization (mean/std per channel)", normalization.str()},
                {"training images (fingerprint of 16 samples)",
                 std::to_string(sampled_image_fingerprint(train))}});
  return facts;
}

ResumePlan plan_resume(const TrainConfig& config, Communicator& communicator) {
  ResumePlan plan;
  plan.accumulate = config.accumulate;
  plan.path = resume_path(config, communicator);
  if (plan.path.empty()) return plan;
  plan.state = read_checkpoint_state(plan.path);
  CONVNET_CHECK(static_cast<int64_t>(config.seed) == plan.state.seed, plan.path,
                " was made with --seed ", plan.state.seed,
                " (the data order and augmentation follow it): resume with the same --seed, not ",
                config.seed);
  plan.accumulate = resumed_accumulate(config, plan, communicator.size());
  return plan;
}

DataShape data_shape(const TrainConfig& config, const DatasetInfo& info) {
  const DataShape shape{.channels = config.in_channels > 0 ? config.in_channels : info.channels,
                        .classes = config.num_classes > 0 ? config.num_classes : info.num_classes};
  CONVNET_CHECK(shape.channels == info.channels, "--in-channels ", shape.channels, " but ",
                config.train_data, " has ", info.channels, "-channel images");
  CONVNET_CHECK(shape.classes >= info.num_classes, "--num-classes ", shape.classes, " but ",
                config.train_data, " has ", info.num_classes, " classes");
  CONVNET_CHECK(shape.classes >= 2, config.train_data, " has ", info.num_classes,
                " class: a classifier needs at least 2 (its loss would be 0 whatever it learns)");
  return shape;
}

RunPosition run_position(const TrainConfig& config, const ResumePlan& resume, int64_t count,
                         int world) {
  const CheckpointState& state = resume.state;
  RunPosition position;
  position.steps_per_epoch = steps_per_epoch(count, world * resume.accumulate, config.batch_size);
  position.start_epoch = state.epoch;
  position.start_step_in_epoch = state.step_in_epoch;
  if (!resume.path.empty()) {
    const int64_t old_global = state.batch_size * state.world_size * state.accumulate;
    const int64_t new_global = config.batch_size * world * resume.accumulate;
    CONVNET_CHECK(old_global != new_global || state.steps_per_epoch == position.steps_per_epoch,
                  resume.path, " has ", state.steps_per_epoch, " steps per epoch, ",
                  config.train_data, " now gives ", position.steps_per_epoch,
                  ": the training data changed since the checkpoint");
    position.start_step_in_epoch = state.step_in_epoch * old_global / new_global;
  }
  position.start_step = state.epoch * position.steps_per_epoch + position.start_step_in_epoch;
  position.total_steps = position.steps_per_epoch * config.epochs;
  if (config.max_steps > 0) position.total_steps = std::min(position.total_steps, config.max_steps);
  return position;
}

LoaderOptions training_loader_options(const TrainConfig& config, const DatasetInfo& info,
                                      bool channels_last, int world, int rank, int64_t accumulate) {
  LoaderOptions options;
  options.augment.channels_last = channels_last;
  options.augment.recipe = resolve_recipe(config.recipe, info, config.train_data);
  options.augment.size = config.crop;
  options.augment.seed = config.seed;
  options.augment.random_erase = config.random_erase;
  options.mix = {.mixup_alpha = config.mixup_alpha,
                 .cutmix_alpha = config.cutmix_alpha,
                 .prob = config.mix_prob,
                 .switch_prob = config.mix_switch_prob};
  options.batch_size = config.batch_size;
  options.world = world;
  options.rank = rank;
  options.accumulate = accumulate;
  options.threads = config.loader_threads;
  options.prefetch = std::max(4, 2 * config.loader_threads);
  options.skip_corrupt = config.skip_corrupt;
  return options;
}

LoaderOptions evaluation_loader_options(const TrainConfig& config, const LoaderOptions& training,
                                        const Loader& loader, const DatasetInfo* val_info) {
  LoaderOptions options = training;
  options.train = false;
  options.augment.train = false;  // center crop / stored image, never random
  options.batch_size = config.eval_batch_size > 0 ? config.eval_batch_size : config.batch_size;
  options.augment.mean = loader.mean();
  options.augment.std = loader.std();
  options.augment.size = loader.height();
  if (options.augment.recipe == Recipe::imagenet && val_info &&
      val_info->layout == DatasetLayout::raw && val_info->height == loader.height() &&
      val_info->width == loader.width())
    options.augment.recipe = Recipe::none;  // already at the model's input size
  return options;
}

LrScheduleOptions lr_schedule_options(const TrainConfig& config, int64_t global_batch) {
  LrScheduleOptions options;
  options.kind = config.schedule;
  options.base_lr =
      config.lr * (config.lr_scaling == LrScaling::linear ? global_batch / 256.0 : 1.0);
  options.warmup_epochs = config.warmup_epochs;
  options.milestones = parse_milestones(config.milestones, config.epochs);
  options.step_size = config.step_size;
  options.gamma = config.gamma;
  options.epochs = config.epochs;
  options.lr_min = config.lr_min;
  return options;
}

bool CheckpointSchedule::due_after(int64_t done, int64_t steps_per_epoch) const {
  if (steps > 0) return done % steps == 0;
  return done % steps_per_epoch == 0 && (done / steps_per_epoch) % epochs == 0;
}

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

}  // namespace convnet
