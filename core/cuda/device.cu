// Which CUDA devices this process sees, which library versions it runs
// against, and which GPU a rank drives.
#include <cuda_runtime.h>
#include <cudnn.h>

#include <sstream>

#include "core/cuda/device.h"
#include "core/error.h"

namespace convnet::cuda {

int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) return 0;  // no driver or no GPU
  return count;
}

std::string runtime_status() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) return cudaGetErrorString(status);
  return count > 0 ? "ok" : "no CUDA device";
}

std::string describe() {
  std::ostringstream out;
  int driver = 0, runtime = 0;
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);
  out << "driver " << driver / 1000 << "." << driver % 1000 / 10 << ", runtime " << runtime / 1000
      << "." << runtime % 1000 / 10 << ", cuDNN " << cudnnGetVersion()
      << ", status: " << runtime_status() << "\n";
  for (int d = 0; d < device_count(); ++d) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, d) != cudaSuccess) continue;
    out << "gpu " << d << ": " << p.name << ", sm_" << p.major << p.minor << ", "
        << (p.totalGlobalMem >> 20) << " MiB\n";
  }
  return out.str();
}

}  // namespace convnet::cuda

namespace convnet::cuda {

int gpu_for_local_rank(int local_rank, int local_size) {
  const int count = device_count();
  CONVNET_CHECK(count > 0, "--device cuda: no usable GPU (", runtime_status(), ")");
  // One visible GPU: one per rank through CUDA_VISIBLE_DEVICES (Slurm's
  // --gpu-bind); ranks that really share one GPU get NCCL's error instead.
  if (count == 1) return 0;
  CONVNET_CHECK(local_size <= count, "--device cuda: ", local_size,
                " ranks run on this node but it has ", count,
                " GPU(s); start at most one rank per GPU");
  return local_rank;
}

}  // namespace convnet::cuda
