// The data loader: background threads turn dataset samples into normalized
// float NCHW batches, in an order that is a pure function of the seed.
//
// Training order (sample_order.h): epoch e visits epoch_permutation(N, seed,
// e). A global step takes world * accumulate micro-batches of batch_size
// consecutive positions; micro-batch a (0 <= a < accumulate) of rank r in
// step s is global micro-batch s * world * accumulate + a * world + r. So
// P ranks x batch B and P/k ranks x batch B with k times the accumulation
// see the same micro-batches in each step (BN statistics stay per
// micro-batch). The last partial global batch of an epoch is dropped.
//
// Evaluation: the rank's contiguous eval_shard, in order, in batches of
// batch_size (the last one may be smaller), exactly once.
//
// Threads fill a bounded queue (`prefetch` batches) ahead of the consumer;
// batches come out in sequence order whatever thread made them, and their
// content depends only on (seed, epoch, index) (augment.h).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "datasets/augment.h"
#include "datasets/batch_mix.h"
#include "datasets/dataset.h"

namespace convnet {

struct LoaderOptions {
  AugmentOptions augment;   // mean/std empty: the dataset's
  bool train = true;        // false: this rank's evaluation shard, once, never augmented
  int64_t batch_size = 32;  // per rank and micro-batch
  int64_t world = 1, rank = 0;
  int64_t accumulate = 1;  // micro-batches per rank and step (training)
  int threads = 2;
  int prefetch = 4;           // ready batches queued ahead of the consumer
  bool skip_corrupt = false;  // training: replace an undecodable sample (counted, warned)
  MixOptions mix;             // training: mixup / CutMix of each micro-batch (batch_mix.h)
};

// Where the loader stands: the next micro-batch this rank will return.
struct LoaderPosition {
  int64_t epoch = 0;
  int64_t micro_batch = 0;  // within the epoch, this rank's: step * accumulate + a
};

struct Batch {
  std::vector<float> images;     // (count, C, H, W), or (count, H, W, C) with channels_last
  std::vector<int64_t> labels;   // (count)
  std::vector<int64_t> indices;  // (count) dataset indices (after any substitution)
  int64_t count = 0;
  int64_t epoch = 0, micro_batch = 0;
  int64_t skipped = 0;  // corrupt samples replaced (skip_corrupt)
  // Mixed micro-batches (LoaderOptions::mix): the targets are
  // lambda onehot(labels) + (1 - lambda) onehot(labels_b); labels_b empty: unmixed.
  std::vector<int64_t> labels_b;
  double lambda = 1.0;
};

class Loader {
 public:
  Loader(std::shared_ptr<const Dataset> dataset, const LoaderOptions& options,
         LoaderPosition start = {});
  ~Loader();  // stops the threads
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  // Training: global steps per epoch (same on every rank). Evaluation: this
  // rank's batches.
  int64_t steps_per_epoch() const { return steps_per_epoch_; }
  int64_t channels() const { return channels_; }
  int64_t height() const { return height_; }
  int64_t width() const { return width_; }
  const std::vector<double>& mean() const { return options_.augment.mean; }
  const std::vector<double>& std() const { return options_.augment.std; }

  // The next batch in sequence; false once an evaluation shard is exhausted.
  // Rethrows a worker's error (naming the file and sample).
  bool next(Batch* batch);
  LoaderPosition position() const;
  // Seconds next() spent waiting for workers, since construction.
  double wait_seconds() const { return wait_seconds_; }

 private:
  struct Ready {
    Batch batch;
    std::exception_ptr error;
  };
  void work();
  void stop_threads();
  void fill(int64_t ticket, Batch* batch);
  std::shared_ptr<const std::vector<int64_t>> permutation(int64_t epoch);

  std::shared_ptr<const Dataset> dataset_;
  LoaderOptions options_;
  LoaderPosition start_;
  int64_t steps_per_epoch_ = 0, micro_batches_per_epoch_ = 0, total_tickets_ = -1;
  int64_t eval_begin_ = 0, eval_end_ = 0;
  int64_t channels_ = 0, height_ = 0, width_ = 0;

  std::mutex mutex_;
  std::condition_variable ready_cv_, space_cv_;
  int64_t next_ticket_ = 0, next_consume_ = 0;
  std::map<int64_t, Ready> ready_;
  std::map<int64_t, std::shared_ptr<const std::vector<int64_t>>> permutations_;
  bool stop_ = false;
  double wait_seconds_ = 0;
  std::vector<std::thread> threads_;
};

}  // namespace convnet
