#include "datasets/loader.h"

#include <hdf5.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <system_error>

#include "core/error.h"
#include "datasets/sample_order.h"

namespace convnet {

namespace {

// The mean and std the loader normalizes by (per channel, pixels scaled to
// [0, 1]): finite, and a std of at least 1e-3, below which a (nearly)
// constant channel would be scaled by more than 1000 (0: a division by zero).
// `dataset_path` names the dataset they come from ("": recorded with the model).
void check_normalization(const AugmentOptions& augment, const std::string& dataset_path) {
  const std::string source =
      dataset_path.empty() ? "the normalization recorded with the model" : dataset_path;
  for (std::size_t k = 0; k < augment.std.size(); ++k) {
    CONVNET_CHECK(std::isfinite(augment.mean[k]) && std::isfinite(augment.std[k]), source,
                  ": damaged normalization: channel ", k, " has mean ", augment.mean[k],
                  " and std ", augment.std[k]);
    CONVNET_CHECK(augment.std[k] >= 1e-3, source, ": std of channel ", k, " is ", augment.std[k],
                  dataset_path.empty()
                      ? " (damaged: normalizing by it would scale the channel by more than 1000)"
                      : ": the channel is (nearly) constant, and normalizing by it would scale it "
                        "by more than 1000; drop the channel or convert other data");
  }
}

}  // namespace

Loader::Loader(std::shared_ptr<const Dataset> dataset, const LoaderOptions& options,
               LoaderPosition start)
    : dataset_(std::move(dataset)), options_(options), start_(start) {
  const DatasetInfo& info = dataset_->info();
  CONVNET_CHECK(options_.batch_size > 0, "--batch-size must be positive, got ",
                options_.batch_size);
  CONVNET_CHECK(options_.world > 0 && options_.rank >= 0 && options_.rank < options_.world,
                "loader: rank ", options_.rank, " of ", options_.world);
  CONVNET_CHECK(options_.accumulate > 0, "--accumulate must be positive, got ",
                options_.accumulate);
  CONVNET_CHECK(options_.threads > 0 && options_.prefetch > 0,
                "--loader-threads and the prefetch depth must be positive");
  AugmentOptions& augment = options_.augment;
  // An evaluation pass never draws random crops or flips (whatever the
  // training options it was copied from said).
  if (!options_.train) augment.train = false;
  const bool dataset_statistics = augment.std.empty();
  if (augment.mean.empty()) augment.mean = dataset_->mean();
  if (augment.std.empty()) augment.std = dataset_->std();
  CONVNET_CHECK(static_cast<int64_t>(augment.mean.size()) == info.channels &&
                    static_cast<int64_t>(augment.std.size()) == info.channels,
                "normalization mean/std have ", augment.mean.size(), "/", augment.std.size(),
                " values, the dataset ", info.channels, " channels");
  check_normalization(augment, dataset_statistics ? dataset_->paths().front() : "");
  channels_ = info.channels;
  if (augment.recipe == Recipe::imagenet) {
    if (augment.size == 0) augment.size = 224;
    if (augment.resize == 0) augment.resize = (augment.size * 256 + 112) / 224;
    height_ = width_ = augment.size;
  } else {
    CONVNET_CHECK(info.layout == DatasetLayout::raw || augment.size > 0, dataset_->paths().front(),
                  ": the encoded layout needs a size (the imagenet recipe, or --crop)");
    height_ = info.layout == DatasetLayout::raw ? info.height : augment.size;
    width_ = info.layout == DatasetLayout::raw ? info.width : augment.size;
    CONVNET_CHECK(augment.size == 0 || (augment.size == height_ && augment.size == width_),
                  dataset_->paths().front(), ": images are ", height_, "x", width_,
                  ", not the requested ", augment.size, " (use the imagenet recipe to resize)");
  }
  if (options_.train) {
    const int64_t micro_world = options_.world * options_.accumulate;
    steps_per_epoch_ = convnet::steps_per_epoch(info.count, micro_world, options_.batch_size);
    CONVNET_CHECK(steps_per_epoch_ > 0, dataset_->paths().front(), ": ", info.count,
                  " samples are fewer than one global batch (", micro_world * options_.batch_size,
                  ")");
    micro_batches_per_epoch_ = steps_per_epoch_ * options_.accumulate;
    CONVNET_CHECK(
        start.epoch >= 0 && start.micro_batch >= 0 && start.micro_batch < micro_batches_per_epoch_,
        "loader position (epoch ", start.epoch, ", micro-batch ", start.micro_batch,
        ") outside an epoch of ", micro_batches_per_epoch_);
  } else {
    std::tie(eval_begin_, eval_end_) = eval_shard(info.count, options_.rank, options_.world);
    total_tickets_ = (eval_end_ - eval_begin_ + options_.batch_size - 1) / options_.batch_size;
    steps_per_epoch_ = total_tickets_;
  }
  try {
    for (int t = 0; t < options_.threads; ++t) threads_.emplace_back([this] { work(); });
  } catch (const std::system_error& e) {
    stop_threads();  // the ones that started; the destructor will not run
    throw Error("loader: cannot start " + std::to_string(options_.threads) +
                " threads (--loader-threads): " + e.what());
  }
}

Loader::~Loader() { stop_threads(); }

void Loader::stop_threads() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  space_cv_.notify_all();
  for (std::thread& t : threads_) t.join();
  threads_.clear();
}

LoaderPosition Loader::position() const {
  if (!options_.train) return {0, next_consume_};
  const int64_t absolute =
      start_.epoch * micro_batches_per_epoch_ + start_.micro_batch + next_consume_;
  return {absolute / micro_batches_per_epoch_, absolute % micro_batches_per_epoch_};
}

std::shared_ptr<const std::vector<int64_t>> Loader::permutation(int64_t epoch) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = permutations_.find(epoch);
  if (it != permutations_.end()) return it->second;
  auto order = std::make_shared<const std::vector<int64_t>>(
      epoch_permutation(dataset_->size(), options_.augment.seed, epoch));
  permutations_[epoch] = order;
  while (permutations_.size() > 2) permutations_.erase(permutations_.begin());
  return order;
}

void Loader::fill(int64_t ticket, Batch* batch) {
  const int64_t sample_floats = channels_ * height_ * width_;
  std::vector<int64_t> positions;  // training: positions in the epoch's permutation
  std::shared_ptr<const std::vector<int64_t>> order;
  int64_t global_micro = 0;  // training: the micro-batch's index in its epoch, over all ranks
  if (options_.train) {
    const int64_t absolute = start_.epoch * micro_batches_per_epoch_ + start_.micro_batch + ticket;
    batch->epoch = absolute / micro_batches_per_epoch_;
    batch->micro_batch = absolute % micro_batches_per_epoch_;
    const int64_t step = batch->micro_batch / options_.accumulate;
    const int64_t a = batch->micro_batch % options_.accumulate;
    global_micro = step * options_.world * options_.accumulate + a * options_.world + options_.rank;
    order = permutation(batch->epoch);
    batch->count = options_.batch_size;
    batch->indices.resize(batch->count);
    for (int64_t i = 0; i < batch->count; ++i) {
      positions.push_back(global_micro * options_.batch_size + i);
      batch->indices[i] = (*order)[positions.back()];
    }
  } else {
    const int64_t begin = eval_begin_ + ticket * options_.batch_size;
    batch->epoch = 0;
    batch->micro_batch = ticket;
    batch->count = std::min(options_.batch_size, eval_end_ - begin);
    batch->indices.resize(batch->count);
    for (int64_t i = 0; i < batch->count; ++i) batch->indices[i] = begin + i;
  }
  batch->images.resize(batch->count * sample_floats);
  batch->labels.resize(batch->count);
  batch->skipped = 0;
  for (int64_t i = 0; i < batch->count; ++i) {
    int64_t index = batch->indices[i];
    for (int64_t attempt = 1;; ++attempt) {
      try {
        const Image image = dataset_->load(index);
        try {
          preprocess(image, options_.augment, batch->epoch, index, height_, width_,
                     &batch->images[i * sample_floats]);
        } catch (const std::invalid_argument& e) {
          throw Error(dataset_->describe(index) + ": " + e.what());
        }
        break;
      } catch (const SampleError& e) {
        // Replace the sample by the next one in the epoch's order: the
        // substitute is a function of the order alone, so runs stay
        // reproducible; never silent.
        if (!options_.skip_corrupt || !options_.train || attempt > 16) throw;
        std::fprintf(stderr, "warning: skipping %s (--skip-corrupt)\n", e.what());
        ++batch->skipped;
        index = (*order)[(positions[i] + attempt) % dataset_->size()];
      }
    }
    batch->indices[i] = index;
    batch->labels[i] = dataset_->labels()[index];
  }
  batch->lambda = 1.0;
  batch->labels_b.clear();
  if (options_.train)
    batch->lambda =
        mix_batch(options_.mix, options_.augment.seed, batch->epoch, global_micro, batch->count,
                  channels_, height_, width_, options_.augment.channels_last, batch->images,
                  batch->labels, batch->labels_b);
}

void Loader::work() {
  // Thread-safe HDF5 keeps error printing per thread: errors are reported
  // through exceptions that name the file and sample.
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  for (;;) {
    int64_t ticket;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      space_cv_.wait(lock, [&] {
        return stop_ || (next_ticket_ < next_consume_ + options_.prefetch &&
                         (total_tickets_ < 0 || next_ticket_ < total_tickets_));
      });
      if (stop_) return;
      ticket = next_ticket_++;
    }
    Ready ready;
    try {
      fill(ticket, &ready.batch);
    } catch (...) {
      ready.error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ready_[ticket] = std::move(ready);
    }
    ready_cv_.notify_all();
  }
}

bool Loader::next(Batch* batch) {
  if (total_tickets_ >= 0 && next_consume_ >= total_tickets_) return false;
  const auto begin = std::chrono::steady_clock::now();
  std::unique_lock<std::mutex> lock(mutex_);
  ready_cv_.wait(lock, [&] { return ready_.count(next_consume_) > 0; });
  wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  auto it = ready_.find(next_consume_);
  Ready ready = std::move(it->second);
  ready_.erase(it);
  ++next_consume_;
  lock.unlock();
  space_cv_.notify_all();
  if (ready.error) std::rethrow_exception(ready.error);
  *batch = std::move(ready.batch);
  return true;
}

}  // namespace convnet
