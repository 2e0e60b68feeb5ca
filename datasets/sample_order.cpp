#include "datasets/sample_order.h"

#include "core/error.h"
#include "datasets/splitmix64.h"

namespace convnet {
namespace {

// Uniform in [0, bound) without modulo bias (rejection of the short last range).
uint64_t uniform_below(uint64_t bound, uint64_t& state) {
  const uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
  uint64_t x;
  do x = splitmix64(state);
  while (x >= limit);
  return x % bound;
}

}  // namespace

std::vector<int64_t> epoch_permutation(int64_t count, uint64_t seed, int64_t epoch) {
  CONVNET_CHECK(count > 0 && epoch >= 0, "permutation of ", count, " samples, epoch ", epoch);
  std::vector<int64_t> order(count);
  for (int64_t i = 0; i < count; ++i) order[i] = i;
  uint64_t state = seed ^ (0xd1b54a32d192ed03ULL * static_cast<uint64_t>(epoch + 1));
  splitmix64(state);
  for (int64_t i = count - 1; i > 0; --i)
    std::swap(order[i], order[uniform_below(static_cast<uint64_t>(i + 1), state)]);
  return order;
}

int64_t steps_per_epoch(int64_t count, int64_t world, int64_t per_rank_batch) {
  CONVNET_CHECK(world > 0 && per_rank_batch > 0, "world ", world, " and batch ", per_rank_batch,
                " must be > 0");
  return count / (world * per_rank_batch);
}

std::vector<int64_t> rank_batch(const std::vector<int64_t>& permutation, int64_t step, int64_t rank,
                                int64_t world, int64_t per_rank_batch) {
  const int64_t steps =
      steps_per_epoch(static_cast<int64_t>(permutation.size()), world, per_rank_batch);
  CONVNET_CHECK(step >= 0 && step < steps, "step ", step, " of an epoch of ", steps, " steps");
  CONVNET_CHECK(rank >= 0 && rank < world, "rank ", rank, " of a world of ", world);
  const int64_t begin = step * world * per_rank_batch + rank * per_rank_batch;
  return std::vector<int64_t>(permutation.begin() + begin,
                              permutation.begin() + begin + per_rank_batch);
}

std::pair<int64_t, int64_t> eval_shard(int64_t count, int64_t rank, int64_t world) {
  CONVNET_CHECK(count >= 0 && world > 0 && rank >= 0 && rank < world, "evaluation shard of rank ",
                rank, " of ", world, " over ", count, " samples");
  const int64_t base = count / world, extra = count % world;
  const int64_t begin = rank * base + std::min(rank, extra);
  return {begin, begin + base + (rank < extra ? 1 : 0)};
}

}  // namespace convnet
