// The host emulation itself (cuda_on_host.h): built-ins, barriers, warp
// shuffles, and that the two scheduling orders expose a missing barrier.
#include "tests/cuda_on_host/cuda_on_host.h"
// cuda_on_host.h comes first.
#include <gtest/gtest.h>

#include <numeric>
#include <vector>

#include "core/error.h"

namespace convnet::cuda_on_host {
namespace {

// RAII: the scheduling order for one test, forward again afterwards.
struct OrderScope {
  explicit OrderScope(Order order) { set_order(order); }
  ~OrderScope() { set_order(Order::forward); }
};

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
  __shared__ int slots[64];
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
  try {
    launch("divergent", 1, 32, [] { divergent_barriers(); });
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("divergent: threads of block (0, 0) wait at different"),
              std::string::npos)
        << e.what();
  }
}

__global__ void shuffle_after_exit() {
  if (threadIdx.x == 3) return;
  __shfl_down_sync(0xffffffffu, 1.0f, 1);
}

TEST(CudaOnHost, AShuffleWithExitedLanesIsAnError) {
  try {
    launch("early_exit", 1, 32, [] { shuffle_after_exit(); });
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("early_exit: a warp shuffle in warp 0 with 1 exited"),
              std::string::npos)
        << e.what();
  }
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
