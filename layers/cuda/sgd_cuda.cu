// The SGD step on the GPU (layers/sgd.h): one launch over the flat
// parameter buffer, the weight decay looked up per segment. Contract in kernels.h.
#include "layers/cuda/kernels.h"
#include "layers/cuda/launch.cuh"

namespace convnet::cuda {
void sgd_step_segments(float* w, const float* g, float* v, int64_t n, const int64_t* ends,
                       const float* decays, int64_t count, float lr, float momentum, float keep,
                       bool first, bool nesterov, float grad_scale, cudaStream_t stream) {
  for_each("sgd_step_segments", n, stream, [=] __device__(int64_t i) {
    const float decay = decays[math::segment_of(i, ends, count)];
    math::sgd_step(i, w, g, v, lr, momentum, keep, decay, first, nesterov, grad_scale);
  });
}

}  // namespace convnet::cuda
