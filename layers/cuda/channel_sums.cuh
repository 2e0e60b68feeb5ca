// Per-channel sums over (N, H, W), shared by the kernels that reduce
// activations to one value per channel (batch norm's statistics and
// backward, bias gradients). NCHW (or any layout with math::plane_offset):
// one block per channel. Channels-last (NHWC) data are rows of c channels:
// a block covers 32 channels (a warp reads 32 consecutive values of a row)
// and one group of rows; each block writes two partial sums per channel,
// which a second pass adds in group order (deterministic).
#pragma once

#include "layers/cuda/launch.cuh"

namespace convnet::cuda {

// One block per channel: sums[ch] += sum of dy over (N, HW).
template <typename T>
__global__ void channel_sums_kernel(const T* dy, float* sums, int64_t n, int64_t c, int64_t hw,
                                    bool channels_last) {
  const int64_t ch = blockIdx.x;
  float sum = 0.0f;
  for (int64_t j = threadIdx.x; j < n * hw; j += blockDim.x)
    sum += math::load(dy[math::plane_offset((j / hw) * c + ch, j % hw, c, hw, channels_last)]);
  sum = block_sum(sum);
  if (threadIdx.x == 0) sums[ch] += sum;
}

inline constexpr int kTileChannels = 32, kTileRows = 8;
inline constexpr int64_t kMaxPartialBlocks = 2048;  // channel tiles x row groups

inline int64_t channel_tiles(int64_t c) { return (c + kTileChannels - 1) / kTileChannels; }

inline int64_t row_groups(int64_t rows, int64_t c) {
  return std::max<int64_t>(
      1, std::min<int64_t>((rows + 255) / 256, kMaxPartialBlocks / channel_tiles(c)));
}

// partials[(g * 2 + k) * c + ch] = sum over row group g of component k of
// f(i, ch), i = row * c + ch (f returns a float2).
template <typename F>
__global__ void channels_last_partials_kernel(int64_t rows, int64_t c, F f, float* partials) {
  CONVNET_SHARED(float, tile, [2][kTileRows][kTileChannels + 1]);
  const int64_t ch = blockIdx.x * static_cast<int64_t>(kTileChannels) + threadIdx.x;
  float a = 0.0f, b = 0.0f;
  if (ch < c)
    for (int64_t r = blockIdx.y * static_cast<int64_t>(kTileRows) + threadIdx.y; r < rows;
         r += static_cast<int64_t>(kTileRows) * gridDim.y) {
      const float2 v = f(r * c + ch, ch);
      a += v.x;
      b += v.y;
    }
  tile[0][threadIdx.y][threadIdx.x] = a;
  tile[1][threadIdx.y][threadIdx.x] = b;
  __syncthreads();
  if (threadIdx.y < 2 && ch < c) {
    float sum = 0.0f;
    for (int k = 0; k < kTileRows; ++k) sum += tile[threadIdx.y][k][threadIdx.x];
    partials[(blockIdx.y * 2 + threadIdx.y) * c + ch] = sum;
  }
}

// Launches the partial sums; returns the number of row groups.
template <typename F>
int64_t channels_last_partials(const char* name, int64_t rows, int64_t c, F f, float* partials,
                               cudaStream_t stream) {
  const int64_t groups = row_groups(rows, c);
  const dim3 grid(static_cast<unsigned>(channel_tiles(c)), static_cast<unsigned>(groups));
  CONVNET_LAUNCH(name, channels_last_partials_kernel, grid, dim3(kTileChannels, kTileRows), stream,
                 rows, c, f, partials);
  return groups;
}

// The two sums of channel ch over every row group, in group order.
__device__ inline float2 total_of(const float* partials, int64_t groups, int64_t c, int64_t ch) {
  float2 sum = make_float2(0.0f, 0.0f);
  for (int64_t g = 0; g < groups; ++g) {
    sum.x += partials[(g * 2) * c + ch];
    sum.y += partials[(g * 2 + 1) * c + ch];
  }
  return sum;
}

}  // namespace convnet::cuda
