// Everything `convnet train` can be told, with the defaults in one place.
// launch/train_options.cpp builds the command line and INI parser from this
// struct; the trainer saves the resolved values in the run directory.
#pragma once

#include <cstdint>
#include <string>

namespace convnet {

struct TrainConfig {
  // Model and data
  std::string model;
  std::string train_data, val_data;  // a file, a comma list or a glob
  int64_t in_channels = 0;           // 0: from the dataset
  int64_t num_classes = 0;           // 0: from the dataset
  std::string recipe = "auto";       // none, cifar, imagenet; auto: imagenet for encoded data,
                                     // cifar for raw images up to 64x64, else none
  int64_t crop = 0;                  // imagenet recipe: training/eval crop (0: 224)
  bool memory_efficient = true;      // DenseNet shared buffers
  bool skip_corrupt = false;

  // Optimization
  int64_t epochs = 1;
  int64_t batch_size = 32;  // per rank and micro-batch
  int64_t accumulate = 1;   // micro-batches per rank and step
  int64_t max_steps = 0;    // stop after this many steps (0: all epochs)
  double lr = 0.1;
  std::string lr_scaling = "none";  // none | linear (Goyal et al.: lr * global batch / 256)
  std::string schedule = "multistep";
  std::string milestones = "";  // multistep epochs, comma separated (default: 50% and 75%)
  double step_size = 30;        // step schedule, epochs
  double gamma = 0.1;
  double warmup_epochs = 0;
  double momentum = 0.9;
  bool nesterov = false;
  double weight_decay = 1e-4;
  bool no_bn_decay = false;  // exclude BN parameters and biases from weight decay
  double label_smoothing = 0;
  uint64_t seed = 0;

  // System
  std::string run_dir = "run";
  std::string device = "cpu";      // cpu, or cuda: the GPU of the rank's local rank
  std::string precision = "fp32";  // fp32; GPU: tf32, bf16, fp16 (mixed precision)
  std::string layout = "auto";     // nchw, nhwc (GPU), nchw8c, nchw16c (CPU); see resolve_layout
  int threads = 0;  // compute threads per rank (0: the node's cores / ranks on the node)
  int loader_threads = 2;
  double bucket_mb = 25;
  double comm_timeout = 600;  // seconds a rank may wait for the others before ending the job
  bool overlap = true;        // allreduce buckets during backward
  int64_t log_every = 50;
  // When loss and accuracy are read back (a host wait on the GPU): step, or
  // log (log lines, epoch ends, checkpoints, stops); auto: log on the GPU
  // except under fp16 (its loss scaler reads every step), else step.
  std::string read_metrics = "auto";
  int64_t eval_batch_size = 0;  // 0: batch_size

  // Checkpoints and resume
  std::string checkpoint_every = "1";  // N or Nepochs, or Nsteps
  int64_t keep = 3;                    // newest checkpoints kept (plus the best)
  std::string resume = "";             // "", "auto" (newest good one in run_dir) or a file
  bool allow_changed_micro_batch = false;
};

}  // namespace convnet
