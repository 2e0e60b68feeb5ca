// GPU tests: they run on a machine with an NVIDIA GPU (tests/gpu/check.sh)
// and skip, saying why, everywhere else (CI and the build machine have none).
#include "core/cuda/device.h"

#include <cuda_runtime.h>
#include <cudnn.h>
#include <gtest/gtest.h>
#include <nccl.h>

#include <vector>

#include "tests/gpu/gpu_test_util.h"

namespace convnet {
namespace {

TEST(Gpu, DescribesWhatItSees) {
  const std::string text = cuda::describe();
  std::printf("%s", text.c_str());
  EXPECT_NE(text.find("cuDNN "), std::string::npos);
  CONVNET_SKIP_WITHOUT_GPU();
  EXPECT_NE(text.find("gpu 0: "), std::string::npos);
}

TEST(Gpu, MemoryRoundTrip) {
  CONVNET_SKIP_WITHOUT_GPU();
  std::vector<float> host(1 << 20), back(1 << 20);
  for (std::size_t i = 0; i < host.size(); ++i) host[i] = static_cast<float>(i) * 0.5f;
  float* device = nullptr;
  ASSERT_EQ(cudaMalloc(&device, host.size() * 4), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(device, host.data(), host.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(back.data(), device, host.size() * 4, cudaMemcpyDeviceToHost), cudaSuccess);
  cudaFree(device);
  EXPECT_EQ(back, host);
}

TEST(Gpu, CudnnAndNcclLoad) {
  CONVNET_SKIP_WITHOUT_GPU();
  EXPECT_GE(cudnnGetVersion(), 90000u) << "convnet is built against cuDNN 9";
  cudnnHandle_t handle = nullptr;
  ASSERT_EQ(cudnnCreate(&handle), CUDNN_STATUS_SUCCESS);
  cudnnDestroy(handle);
  int nccl = 0;
  ASSERT_EQ(ncclGetVersion(&nccl), ncclSuccess);
  EXPECT_GE(nccl, 20000);
}

}  // namespace
}  // namespace convnet
