// Full-state checkpoints (docs/formats.md, "Checkpoint file"): the weights
// file of models/weights_file.h plus everything a run needs to continue
// exactly, and the run directory's retention rules.
//
//   /model/<key>            as in the weights file (parameters, BN buffers, counters)
//   /optimizer/momentum     float32 (P): SGD's momentum buffer, flat, reverse layer order
//   /ema/params, /ema/buffers  float32 (P), (B): the model EMA (optional)
//   /                       weights-file attributes + kind = "checkpoint", the
//                           CheckpointState fields below, config (INI text),
//                           created (UTC), convnet_version
//
// Every array carries a Fletcher32 checksum; read_checkpoint() reads every
// dataset, so a damaged file fails to load instead of resuming from garbage.
// Files are written by rank 0 to a temporary name, fsync'ed and renamed;
// `latest` (a one-line text file naming the newest checkpoint) is replaced
// only after that rename.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "layers/sgd.h"
#include "models/weights_file.h"

namespace convnet {

constexpr int64_t kCheckpointFormatVersion = 1;

struct CheckpointState {
  int64_t global_step = 0;    // optimizer steps done
  int64_t epoch = 0;          // epoch of the next step
  int64_t step_in_epoch = 0;  // its index within that epoch (the loader position)
  int64_t samples_seen = 0;   // training samples consumed, over all ranks
  int64_t sgd_steps = 0;      // Sgd::step_count (momentum initialised when > 0)
  int64_t world_size = 1, batch_size = 0, accumulate = 1;  // what produced it
  int64_t seed = 0;
  int64_t steps_per_epoch = 0;          // of the global batch that made it (detects changed data)
  std::string config;                   // the resolved configuration (INI)
  double val_top1 = -1, val_loss = -1;  // last evaluation (-1: none yet)
  double best_top1 = -1;
  int64_t best_step = -1;  // checkpoint step with best_top1
  // fp16 dynamic loss scaling (trainer/loss_scaler.h); loss_scale 0: not used.
  double loss_scale = 0;
  int64_t loss_scale_good_steps = 0, skipped_steps = 0;
  std::string created, convnet_version;
};

// The model EMA (trainer/model_ema.h) of a checkpoint: /ema/params (P) and
// /ema/buffers (B, when the model has BN statistics), flat in the host
// store's order as the momentum, and the root attribute ema_updates.
struct EmaValues {
  std::vector<float> params, buffers;
  int64_t updates = 0;
};

// Writes `path` atomically (temporary name, fsync, rename), with `ema` when given.
void save_checkpoint(const std::string& path, const WeightsMetadata& metadata,
                     const ParamStore& store, const Sgd& sgd, const CheckpointState& state,
                     const EmaValues* ema = nullptr);

// The checkpoint's model EMA for a store of the same model; false when it
// has none (written without --model-ema).
bool read_checkpoint_ema(const std::string& path, const ParamStore& store, EmaValues* ema);

// The metadata and state of a checkpoint (cheap: attributes only). Throws
// naming the file for a weights file without training state, another
// format_version, or damage.
CheckpointState read_checkpoint_state(const std::string& path);

// Loads weights, buffers and the momentum buffer into a store and optimizer
// built for the checkpoint's model; every dataset is read and checksummed.
void load_checkpoint(const std::string& path, ParamStore& store, Sgd& sgd,
                     const std::string& expected_model);

// Reads every dataset of an HDF5 file; the error text, or "" when all
// checksums pass and the file reads completely.
std::string verify_hdf5_file(const std::string& path);

// ---- Run directory: checkpoint-<step>.h5, `latest`, retention
std::string checkpoint_path(const std::string& run_dir, int64_t step);
// Checkpoints in the directory, newest (highest step) first.
std::vector<std::string> list_checkpoints(const std::string& run_dir);
// The newest checkpoint that reads back completely; damaged ones are skipped
// with a warning on stderr. "" when there is none.
std::string find_resumable_checkpoint(const std::string& run_dir);
// Atomically points run_dir/latest at `path`'s file name.
void write_latest_pointer(const std::string& run_dir, const std::string& path);
// Deletes all but the newest `keep` checkpoints up to `current_step` and the
// one of `best_step`; never the checkpoint of `current_step` itself.
void prune_checkpoints(const std::string& run_dir, int64_t keep, int64_t best_step,
                       int64_t current_step);

}  // namespace convnet
