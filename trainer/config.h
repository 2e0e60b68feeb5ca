// Everything `convnet train` can be told, with the defaults in one place.
// launch/train_command.cpp builds the command line and INI parser from this
// struct (named values are parsed and checked there, see
// launch/option_table.h); the trainer saves the resolved values in the run
// directory. std::optional fields are "auto": the trainer chooses.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "comm/device_selection.h"
#include "core/context.h"
#include "datasets/augment.h"
#include "trainer/lr_schedule.h"

namespace convnet {

// When loss and accuracy are read back (a host wait on the GPU): every
// step, or only at log lines, epoch ends, checkpoints and stops.
enum class ReadMetrics { step, log };
template <>
struct NamedValues<ReadMetrics> {
  static constexpr std::pair<ReadMetrics, const char*> table[] = {{ReadMetrics::step, "step"},
                                                                  {ReadMetrics::log, "log"}};
};

// The learning rate as given, or times global batch / 256 (Goyal et al.).
enum class LrScaling { none, linear };
template <>
struct NamedValues<LrScaling> {
  static constexpr std::pair<LrScaling, const char*> table[] = {{LrScaling::none, "none"},
                                                                {LrScaling::linear, "linear"}};
};

struct TrainConfig {
  // Model and data
  std::string model;
  std::string train_data, val_data;  // a file, a comma list or a glob
  int64_t in_channels = 0;           // 0: from the dataset
  int64_t num_classes = 0;           // 0: from the dataset
  std::optional<Recipe> recipe;      // auto: imagenet for encoded data, cifar for raw
                                     // images up to 64x64, else none
  int64_t crop = 0;                  // imagenet recipe: training/eval crop (0: 224)
  bool memory_efficient = true;      // DenseNet shared buffers
  bool skip_corrupt = false;

  // Optimization
  int64_t epochs = 1;
  int64_t batch_size = 32;  // per rank and micro-batch
  int64_t accumulate = 1;   // micro-batches per rank and step
  int64_t max_steps = 0;    // stop after this many steps (0: all epochs)
  double lr = 0.1;
  LrScaling lr_scaling = LrScaling::none;
  LrScheduleKind schedule = LrScheduleKind::multistep;
  std::string milestones = "";  // multistep epochs, comma separated (default: 50% and 75%)
  double step_size = 30;        // step schedule, epochs
  double gamma = 0.1;
  double warmup_epochs = 0;
  double lr_min = 0;  // cosine's floor
  double momentum = 0.9;
  bool nesterov = false;
  double weight_decay = 1e-4;
  bool no_bn_decay = false;  // exclude BN parameters and biases from weight decay
  double label_smoothing = 0;
  double drop_path = 0;
  double bn_momentum = 0.1;   // BatchNorm's weight of a step's statistics
  double clip_grad_norm = 0;  // > 0: clip the averaged gradients' L2 norm (CPU)
  // Mixup / CutMix of each micro-batch (datasets/batch_mix.h); 0: off.
  double mixup_alpha = 0, cutmix_alpha = 0, mix_prob = 1.0, mix_switch_prob = 0.5;
  double random_erase = 0;  // probability of random erasing (datasets/augment.h)  // stochastic
                            // depth: the last residual block's drop probability
  uint64_t seed = 0;
  // Fine-tuning (trainer/init_weights.h): starting weights, used when no
  // checkpoint is resumed; adapt_stem fits a stem to other input channels.
  std::string init_weights;
  bool adapt_stem = false;
  // An exponential moving average of the weights (trainer/model_ema.h).
  bool model_ema = false;
  double model_ema_decay = 0.9998;
  bool model_ema_warmup = false;

  // System
  std::string run_dir = "run";
  Backend device = Backend::cpu;          // cuda: the GPU of the rank's local rank
  Precision precision = Precision::fp32;  // bf16 (CPU with avx512_bf16/AMX, GPU); GPU tf32, fp16
  std::optional<Layout> layout;           // nchw, nhwc, nchw8c, nchw16c (CPU); auto:
                                          // see resolve_layout
  int threads = 0;  // compute threads per rank (0: the node's cores / ranks on the node)
  int loader_threads = 2;
  double bucket_mb = 25;
  double comm_timeout = 600;  // seconds a rank may wait for the others before ending the job
  bool overlap = true;        // allreduce buckets during backward
  int64_t log_every = 50;
  bool tensorboard = true;  // event files in run_dir (trainer/tensorboard.h)
  // auto: log on the GPU (fp16 reads every step regardless), step on the CPU.
  std::optional<ReadMetrics> read_metrics;
  int64_t eval_batch_size = 0;  // 0: batch_size

  // Checkpoints and resume
  std::string checkpoint_every = "1";  // N or Nepochs, or Nsteps
  int64_t keep = 3;                    // newest checkpoints kept (plus the best)
  std::string resume = "";             // "", "auto" (newest good one in run_dir) or a file
  bool allow_changed_micro_batch = false;
};

}  // namespace convnet
