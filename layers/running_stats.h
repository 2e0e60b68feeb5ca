// The per-channel arithmetic of BatchNorm's running statistics when they
// move once per training step (RunningStats::per_step in layers/batch_norm.h),
// shared by the CPU layer and the GPU kernels (callable from both).
//
// A step is K micro-batches (over all ranks and accumulation), each of
// M = N*H*W values per channel. Each micro-batch k adds its batch mean m_k
// and biased variance v_k to three sums: S1 = sum m_k, S2 = sum v_k,
// S3 = sum m_k^2. The step's statistics over all K*M values are then
//   mean = S1 / K
//   var  = S2 / K + (S3 / K - mean^2)     (within + between micro-batches)
// and the running statistics move as PyTorch's, with the unbiased variance:
//   running_mean = (1 - momentum) running_mean + momentum mean
//   running_var  = (1 - momentum) running_var  + momentum var K M / (K M - 1)
// With K = 1 the between term is exactly 0 and this is PyTorch's update of
// one forward, bit for bit. The sums depend only on the step's micro-batches,
// not on how ranks and accumulation split them (two values add the same
// either way), so the statistics do not depend on the rank count.
#pragma once

#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define CONVNET_RUNNING_HD __host__ __device__
#else
#define CONVNET_RUNNING_HD
#endif

namespace convnet::running_stats {

CONVNET_RUNNING_HD inline void add(float mean, float biased_var, float* sum_mean, float* sum_var,
                                   float* sum_mean_sq) {
  *sum_mean += mean;
  *sum_var += biased_var;
  *sum_mean_sq += mean * mean;
}

// `values` is K M, the step's values per channel (> 1).
CONVNET_RUNNING_HD inline void update(float sum_mean, float sum_var, float sum_mean_sq,
                                      int64_t micro_batches, double values, double momentum,
                                      float* running_mean, float* running_var) {
  const float k = static_cast<float>(micro_batches);
  const float mean = sum_mean / k;
  float between = 0;
  if (micro_batches > 1) between = fmaxf(sum_mean_sq / k - mean * mean, 0.0f);
  const float var = sum_var / k + between;
  *running_mean = static_cast<float>((1 - momentum) * *running_mean + momentum * mean);
  *running_var =
      static_cast<float>((1 - momentum) * *running_var + momentum * var * (values / (values - 1)));
}

}  // namespace convnet::running_stats
