// What a training run decides before its first step, from the
// configuration, the training data and (on resume) the checkpoint: each a
// small function the trainer (trainer/trainer.cpp) calls once.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "comm/agreement.h"
#include "comm/communicator.h"
#include "datasets/loader.h"
#include "trainer/checkpoint.h"
#include "trainer/config.h"
#include "trainer/lr_schedule.h"

namespace convnet {

// Throws naming the first option out of range.
void check_train_config(const TrainConfig& config);
// What every rank of a training must share: the resolved options of
// `config_text` (INI; the data paths and thread counts may differ per rank)
// and the training data's identity (count, shape, classes, a fingerprint of
// the labels, the normalization), for check_ranks_agree.
RankFacts training_facts(const std::string& config_text, const Dataset& train);
// The most loader threads a rank may start (4 per CPU, at least 16).
int max_loader_threads();

// Where a run starts: fresh (path empty, state default) or from a checkpoint,
// which decides the micro-batching: the global batch and the per-replica
// micro-batch are kept, so `accumulate` = the checkpoint's micro-batches per
// step / this run's ranks. Collective (rank 0 finds --resume auto's file).
// Throws when a fresh run's directory holds an earlier run's checkpoints, or
// the checkpoint disagrees with --seed, --batch-size or the rank count.
struct ResumePlan {
  std::string path;  // "" for a fresh run
  CheckpointState state;
  int64_t accumulate = 1;  // micro-batches per rank and step
};
ResumePlan plan_resume(const TrainConfig& config, Communicator& communicator);

// The images a run trains on: the dataset's, unless the options say more
// classes (an error if they contradict it).
struct DataShape {
  int64_t channels = 0, classes = 0;
};
DataShape data_shape(const TrainConfig& config, const DatasetInfo& info);

// The run's position in steps of its global batch (world x accumulate x
// batch_size). A resume under another global batch keeps the samples seen,
// rounded down to a step. Throws when the data changed since the checkpoint.
struct RunPosition {
  int64_t steps_per_epoch = 0;
  int64_t start_epoch = 0, start_step_in_epoch = 0;
  int64_t start_step = 0, total_steps = 0;  // global steps [start, total)
};
RunPosition run_position(const TrainConfig& config, const ResumePlan& resume, int64_t count,
                         int world);

// The training loader of this rank (augmentation recipe, sharding, threads).
LoaderOptions training_loader_options(const TrainConfig& config, const DatasetInfo& info,
                                      bool channels_last, int world, int rank, int64_t accumulate);
// The evaluation loader: the training set's normalization, the model's input
// size, no augmentation beyond the recipe's centre crop (none when the
// validation images already have the model's size).
LoaderOptions evaluation_loader_options(const TrainConfig& config, const LoaderOptions& training,
                                        const Loader& loader, const DatasetInfo* val_info);

// The learning rate per step (--lr-scaling linear: lr x global batch / 256).
LrScheduleOptions lr_schedule_options(const TrainConfig& config, int64_t global_batch);

// --checkpoint-every: "2" or "2epochs" every 2 epochs, "500steps" every 500
// steps. Throws naming a bad value.
struct CheckpointSchedule {
  int64_t epochs = 0, steps = 0;  // one of them > 0
  // True when the step ending at global step `done` (1-based) is scheduled.
  bool due_after(int64_t done, int64_t steps_per_epoch) const;
};
CheckpointSchedule parse_checkpoint_every(const std::string& text);

// "1h05m" or "4m07s".
std::string format_duration(double seconds);

}  // namespace convnet
