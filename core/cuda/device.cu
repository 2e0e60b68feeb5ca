// The GPU backend target. The GPU issue fills it with cuDNN layers and NCCL;
// for now it answers how many CUDA devices this process sees.
#include <cuda_runtime.h>

#include "core/cuda/device.h"

namespace convnet::cuda {

int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) return 0;  // no driver or no GPU
  return count;
}

}  // namespace convnet::cuda
