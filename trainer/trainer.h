// Data-parallel training: every rank runs this same loop on a full model
// replica and its own part of each global batch (datasets/loader.h).
//
// One step, per rank:
//   zero gradients
//   for each of the `accumulate` micro-batches: forward, loss, backward
//     (dlogits scaled by 1/accumulate, so the buffer holds the mean)
//   the last backward reports finished gradient prefixes to the
//   GradientReducer, which averages buckets over ranks while backward runs
//   wait for the remaining buckets (on the GPU the update waits for NCCL on
//     the device, not the host); agree on metrics (one small allreduce)
//   stop with an error on a non-finite loss (every rank, same step)
//   SGD with the schedule's learning rate
// The CPU and fp16 read the metrics every step, so a non-finite loss stops
// the run before the update. Otherwise the GPU keeps them on the device and
// they are read only at log lines, epoch ends, checkpoints, stops and the last
// step: a GPU step has no host wait, and a non-finite loss stops the run at
// the next read, before anything is saved. Every step still agrees on stop
// requests (signals) with a one-value host allreduce.
// So P ranks x batch B and 1 rank x --accumulate P over the same micro-batches
// reach the same weights up to float summation order. BatchNorm running
// statistics move once per step from all ranks' micro-batches (one small
// allreduce), so every replica holds the same ones.
#pragma once

#include <memory>
#include <string>

#include "comm/communicator.h"
#include "trainer/config.h"

namespace convnet {

struct TrainResult {
  int64_t steps = 0;
  double train_loss = 0, train_top1 = 0;  // of the last log interval
  double val_loss = 0, val_top1 = 0, val_top5 = 0;
  bool evaluated = false;
  std::string model_path;       // run_dir/model.h5
  std::string checkpoint_path;  // the last checkpoint written (rank 0)
  bool stopped_early = false;   // a signal stopped the run after a checkpoint
};

// Trains as configured; rank 0 writes run_dir/config.ini (the resolved
// configuration `config_text`), run_dir/metrics.jsonl, checkpoints
// (trainer/checkpoint.h) and run_dir/model.h5. SIGTERM/SIGUSR1/SIGINT end the
// run after the current step and a checkpoint (stopped_early).
// Throws convnet::Error on bad input or a non-finite loss.
TrainResult train(const TrainConfig& config, const std::string& config_text,
                  Communicator& communicator);

}  // namespace convnet
