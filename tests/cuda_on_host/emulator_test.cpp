// The host emulation itself (cuda_on_host.h): built-ins, barriers, warp
// shuffles, and that the two scheduling orders expose a missing barrier.
#include "tests/cuda_on_host/cuda_on_host.h"
// cuda_on_host.h comes first.
#include <gtest/gtest.h>

#include <functional>
#include <numeric>
#include <string>
#include <vector>

#include "core/error.h"

namespace convnet::cuda_on_host {
namespace {

// RAII: the scheduling order for one test, forward again afterwards.
struct OrderScope {
  explicit OrderScope(Order order) { set_order(order); }
  ~OrderScope() { set_order(Order::forward); }
};

// The message of the error a launch throws ("" when it throws none).
std::string launch_error(const char* name, dim3 grid, dim3 block,
                         const std::function<void()>& body) {
  try {
    launch(name, grid, block, body);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

__global__ void record_builtins(int* seen) {
  const unsigned block = blockIdx.y * gridDim.x + blockIdx.x;
  const unsigned thread = threadIdx.y * blockDim.x + threadIdx.x;
  seen[block * blockDim.x * blockDim.y + thread] += 1;
}

TEST(CudaOnHost, EveryThreadOfTheGridRunsOnceWithItsBuiltins) {
  std::vector<int> seen(3 * 2 * 4 * 2, 0);
  launch("record", dim3(3, 2), dim3(4, 2), [&] { record_builtins(seen.data()); });
  EXPECT_EQ(seen, std::vector<int>(seen.size(), 1));
}

// Thread 0 sums what every thread stored in shared memory (t + 1 + stamp).
template <bool kWithBarrier>
__global__ void shared_sum(int stamp, int* out) {
  CONVNET_ON_HOST_SHARED(int, slots, [64]);
  slots[threadIdx.x] = static_cast<int>(threadIdx.x) + 1 + stamp;
  if (kWithBarrier) __syncthreads();
  if (threadIdx.x == 0) {
    int sum = 0;
    for (int t = 0; t < 64; ++t) sum += slots[t];
    *out = sum;
  }
}

int expected_sum(int stamp) { return 64 * 65 / 2 + 64 * stamp; }

TEST(CudaOnHost, ABarrierMakesSharedMemoryReadsOrderIndependent) {
  for (Order order : {Order::forward, Order::reverse}) {
    OrderScope scope(order);
    for (int stamp : {100, 200}) {
      int sum = -1;
      launch("shared_sum", 1, 64, [&] { shared_sum<true>(stamp, &sum); });
      EXPECT_EQ(sum, expected_sum(stamp));
    }
  }
}

// Without the barrier, thread 0 reads the other slots before they are
// written when it runs first (forward), and after (reverse): one of the two
// orders shows the race.
TEST(CudaOnHost, AMissingBarrierGivesAWrongResultInOneOrder) {
  int forward = -1, reverse = -1;
  {
    OrderScope scope(Order::forward);
    launch("shared_sum", 1, 64, [&] { shared_sum<false>(300, &forward); });
  }
  {
    OrderScope scope(Order::reverse);
    launch("shared_sum", 1, 64, [&] { shared_sum<false>(400, &reverse); });
  }
  EXPECT_NE(forward, expected_sum(300));
  EXPECT_EQ(reverse, expected_sum(400));
}

__global__ void warp_sums(float* out) {
  float v = static_cast<float>(threadIdx.x);
  for (unsigned offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  if (threadIdx.x % 32 == 0) out[threadIdx.x / 32] = v;
}

TEST(CudaOnHost, ShuffleDownReducesEachWarp) {
  for (Order order : {Order::forward, Order::reverse}) {
    OrderScope scope(order);
    std::vector<float> out(2, -1.0f);
    launch("warp_sums", 1, 64, [&] { warp_sums(out.data()); });
    EXPECT_EQ(out[0], 31.0f * 32 / 2);
    EXPECT_EQ(out[1], (32.0f + 63.0f) * 32 / 2);
  }
}

__global__ void divergent_barriers() {
  if (threadIdx.x < 16)
    __syncthreads();
  else
    __shfl_down_sync(0xffffffffu, 1.0f, 1);
}

TEST(CudaOnHost, ThreadsAtDifferentBarriersAreAnErrorNotAHang) {
  const std::string error = launch_error("divergent", 1, 32, [] { divergent_barriers(); });
  EXPECT_NE(error.find("divergent: threads of block (0, 0) wait at different"), std::string::npos)
      << error;
}

// Threads [exit_first, exit_last] return at once; the others shuffle.
__global__ void shuffle_after_exit(int exit_first, int exit_last, unsigned delta, float* out) {
  const int t = static_cast<int>(threadIdx.x);
  if (t >= exit_first && t <= exit_last) return;
  out[threadIdx.x] = __shfl_down_sync(0xffffffffu, static_cast<float>(threadIdx.x), delta);
}

// Exited lanes take no part in a shuffle; reading one is an error.
TEST(CudaOnHost, AShuffleMayNotReadAnExitedLane) {
  std::vector<float> out(32, -1.0f);
  launch("upper_half", 1, 32, [&] { shuffle_after_exit(0, 15, 8, out.data()); });
  for (int lane = 16; lane < 32; ++lane) EXPECT_EQ(out[lane], lane < 24 ? lane + 8 : lane);
  const std::string error =
      launch_error("early_exit", 1, 32, [&] { shuffle_after_exit(5, 5, 1, out.data()); });
  EXPECT_NE(error.find("early_exit: lane 4 of warp 0 shuffles from lane 5"), std::string::npos)
      << error;
}

// A block of 40 threads: its second warp has lanes 0-7 only.
TEST(CudaOnHost, AShuffleMayNotReadALaneThePartialWarpLacks) {
  std::vector<float> out(40, -1.0f);
  const std::string error =
      launch_error("partial_warp", 1, 40, [&] { shuffle_after_exit(-1, -1, 16, out.data()); });
  EXPECT_NE(error.find("partial_warp: lane 0 of warp 1 shuffles from lane 16, "
                       "which this block of 40 threads does not have"),
            std::string::npos)
      << error;
}

// Two block sums through one shared array, as launch.cuh's block_sum; without
// the barrier that ends the first, a warp may overwrite the partial sums of
// the first before warp 0 has read them, which only the warp-greedy order
// shows (a write that must wait for other warps' reads).
template <bool kWithBarrier>
__global__ void two_block_sums(float* out) {
  CONVNET_ON_HOST_SHARED(float, partial, [8]);
  float results[2];
  for (int call = 0; call < 2; ++call) {
    float v = static_cast<float>((call + 1) * (threadIdx.x + 1));
    for (unsigned offset = 16; offset > 0; offset /= 2)
      v += __shfl_down_sync(0xffffffffu, v, offset);
    if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = v;
    __syncthreads();
    v = threadIdx.x < 8 ? partial[threadIdx.x] : 0.0f;
    if (threadIdx.x < 32)
      for (unsigned offset = 16; offset > 0; offset /= 2)
        v += __shfl_down_sync(0xffffffffu, v, offset);
    if (kWithBarrier) __syncthreads();
    results[call] = v;
  }
  if (threadIdx.x == 0) out[0] = results[0], out[1] = results[1];
}

TEST(CudaOnHost, AMissingBarrierBeforeReuseShowsInTheWarpGreedyOrder) {
  const float first = 256.0f * 257.0f / 2.0f, second = 2.0f * first;
  for (Order order : {Order::forward, Order::reverse, Order::warp_greedy}) {
    OrderScope scope(order);
    float with[2] = {}, without[2] = {};
    launch("with", 1, 256, [&] { two_block_sums<true>(with); });
    launch("without", 1, 256, [&] { two_block_sums<false>(without); });
    EXPECT_EQ(with[0], first);
    EXPECT_EQ(with[1], second);
    if (order == Order::warp_greedy)
      EXPECT_NE(without[0], first) << "the race went unseen";
    else
      EXPECT_EQ(without[0], first);
  }
}

// Shared memory holds 0xFF bytes (-1 as an int) when each block starts.
__global__ void read_before_write(int* seen) {
  CONVNET_ON_HOST_SHARED(int, value, );
  if (threadIdx.x == 0) {
    seen[blockIdx.x] = value;
    value = 7;
  }
}

TEST(CudaOnHost, SharedMemoryIsPoisonedForEveryBlock) {
  std::vector<int> seen(3, 0);
  launch("poisoned", 3, 32, [&] { read_before_write(seen.data()); });
  EXPECT_EQ(seen, std::vector<int>(3, -1));
}

TEST(CudaOnHost, AnErrorInsideAKernelReachesTheLauncher) {
  EXPECT_THROW(launch("throws", 2, 8,
                      [] { CONVNET_CHECK(blockIdx.x == 0 || threadIdx.x != 5, "thread 5"); }),
               Error);
  int sum = -1;  // the emulation is usable afterwards
  launch("shared_sum", 1, 64, [&] { shared_sum<true>(500, &sum); });
  EXPECT_EQ(sum, expected_sum(500));
}

TEST(CudaOnHost, BadLaunchConfigurationsAreErrors) {
  EXPECT_THROW(launch("big", 1, 2048, [] {}), Error);
  EXPECT_THROW(launch("empty", dim3(1, 0), 32, [] {}), Error);
}

}  // namespace
}  // namespace convnet::cuda_on_host
