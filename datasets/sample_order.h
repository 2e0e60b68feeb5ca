// Which samples each rank reads, in which order: a pure function of
// (seed, epoch, N) and the world, so that results do not depend on the number
// of ranks, on thread timing, or on restarts.
//
// Training: the global order of epoch e is a permutation of [0, N) derived
// from (seed, e) only. Global step s covers positions [s*G, (s+1)*G) of it,
// G = world * per_rank_batch; rank r takes positions
// [s*G + r*B, s*G + (r+1)*B). The last partial global batch is dropped, as
// PyTorch's DistributedSampler + drop_last. A rank count that divides G the
// same way therefore sees the same global batches.
//
// Evaluation: [0, N) split into `world` contiguous parts whose sizes differ by
// at most one; every sample exactly once, no padding duplicates.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

namespace convnet {

// The permutation of epoch `epoch` (Fisher-Yates driven by SplitMix64, so it
// is the same on every platform and compiler).
std::vector<int64_t> epoch_permutation(int64_t count, uint64_t seed, int64_t epoch);

// Full global batches per epoch.
int64_t steps_per_epoch(int64_t count, int64_t world, int64_t per_rank_batch);

// The sample indices rank `rank` reads at global step `step` of `permutation`.
std::vector<int64_t> rank_batch(const std::vector<int64_t>& permutation, int64_t step, int64_t rank,
                                int64_t world, int64_t per_rank_batch);

// [begin, end) of the evaluation samples of `rank`.
std::pair<int64_t, int64_t> eval_shard(int64_t count, int64_t rank, int64_t world);

}  // namespace convnet
