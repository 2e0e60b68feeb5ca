// Helpers for the GPU tests: a fixture that skips (saying why) without a
// usable GPU and otherwise holds a CPU and a GPU context, random host
// tensors, host <-> device copies, and a closeness check of a device tensor
// against the double-precision reference (layers' ref::, the oracle of the
// CPU tests too) or the CPU backend's result.
//
// Tolerance: the GPU computes in f32 with its own summation orders (cuDNN
// picks algorithms), so elements differ from the double-precision result by
// rounding that grows with the reduction length. Checks are relative to the
// largest magnitude of the expected tensor: |gpu - expected| <= rtol *
// max|expected| + atol, with rtol = 1e-4 for f32 (about 1e-7 rounding per
// operation times reductions of up to ~1e3 terms, with a margin) unless a
// test states otherwise.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <memory>
#include <random>
#include <string>

#include "core/context.h"
#include "core/cuda/device.h"
#include "core/cuda/runtime.h"
#include "core/tensor.h"
#include "layers/reference.h"

namespace convnet::testing {

// CONVNET_REQUIRE_GPU=1 (tests/gpu/check.sh on a GPU machine): a missing or
// unusable GPU (an old driver, libcuda not found) fails instead of skipping.
inline bool gpu_required() {
  const char* v = std::getenv("CONVNET_REQUIRE_GPU");
  return v != nullptr && std::string(v) == "1";
}

}  // namespace convnet::testing

// Returns from the test (skipped, or failed under CONVNET_REQUIRE_GPU=1)
// when this process sees no usable GPU.
#define CONVNET_SKIP_WITHOUT_GPU()                                          \
  do {                                                                      \
    if (::convnet::cuda::device_count() > 0) break;                         \
    if (::convnet::testing::gpu_required())                                 \
      GTEST_FAIL() << "CONVNET_REQUIRE_GPU=1 but no usable GPU: "           \
                   << ::convnet::cuda::runtime_status();                    \
    GTEST_SKIP() << "no usable GPU: " << ::convnet::cuda::runtime_status(); \
  } while (0)

namespace convnet::testing {

class GpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CONVNET_SKIP_WITHOUT_GPU();
    ContextOptions options;
    options.backend = Backend::cuda;
    gpu_ = std::make_unique<Context>(options);
  }

  Context& cpu() { return cpu_; }
  Context& gpu() { return *gpu_; }
  cudaStream_t stream() { return gpu_->gpu().stream; }

  // Uniform values in [lo, hi), host memory.
  Tensor random(const Shape& shape, double lo = -1.0, double hi = 1.0) {
    Tensor t = Tensor::empty(shape, cpu_.allocator());
    std::uniform_real_distribution<float> dist(static_cast<float>(lo), static_cast<float>(hi));
    float* p = t.data<float>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = dist(rng_);
    return t;
  }
  Tensor host_zeros(const Shape& shape) { return Tensor::zeros(shape, cpu_.allocator()); }
  Tensor host_copy(const Tensor& t) {
    Tensor out = Tensor::empty(t.shape(), cpu_.allocator());
    out.copy_from(t);
    return out;
  }
  // Device copies, complete on return (a test may use them on another
  // context's stream).
  Tensor upload(const Tensor& host, Layout layout = Layout::nchw) {
    Tensor source = host;
    if (layout != host.layout()) {  // the same logical values, stored in `layout`
      source = Tensor::empty(host.shape(), cpu_.allocator(), DType::f32, layout);
      source.copy_from(host);
    }
    Tensor d = Tensor::empty(host.shape(), gpu_->allocator(), DType::f32, layout);
    cuda::copy(d, source, stream());
    gpu_->gpu().synchronize();
    return d;
  }
  Tensor device_zeros(const Shape& shape, Layout layout = Layout::nchw) {
    Tensor d = Tensor::empty(shape, gpu_->allocator(), DType::f32, layout);
    cuda::zero(d, stream());
    gpu_->gpu().synchronize();
    return d;
  }
  // Waits for every stream of the device (tests may use several contexts).
  // A zero device tensor inside a larger allocation whose 1024 floats before
  // and after hold a sentinel (NaN): guards_intact() then tells whether a
  // kernel wrote outside the tensor (ggml's out-of-bounds check).
  Tensor guarded_zeros(const Shape& shape, Layout layout = Layout::nchw) {
    const int64_t n = shape.numel();
    std::vector<float> host(static_cast<std::size_t>(n + 2 * kGuard), kSentinel);
    std::fill(host.begin() + kGuard, host.begin() + kGuard + n, 0.0f);
    Tensor whole = Tensor::empty(Shape{n + 2 * kGuard}, gpu_->allocator());
    cuda::copy(whole, Tensor::wrap(host.data(), whole.shape()), stream());
    gpu_->gpu().synchronize();
    guarded_.push_back(whole);
    return Tensor::wrap(whole.data<float>() + kGuard, shape, layout, Device::cuda);
  }
  ::testing::AssertionResult guards_intact() {
    for (const Tensor& whole : guarded_) {
      const std::vector<float> v = download(whole).to_vector();
      for (int64_t i = 0; i < kGuard; ++i) {
        const float before = v[static_cast<std::size_t>(i)], after = v[v.size() - 1 - i];
        if (!std::isnan(before) || !std::isnan(after))
          return ::testing::AssertionFailure() << "a kernel wrote outside a tensor of "
                                               << whole.numel() - 2 * kGuard << " elements";
      }
    }
    return ::testing::AssertionSuccess();
  }

  Tensor download(const Tensor& device) {
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    return cuda::to_host(device, stream());
  }

  // |gpu - cpu| <= rtol * max|cpu| + atol elementwise; reports the worst element.
  ::testing::AssertionResult close(const Tensor& gpu_tensor, const Tensor& cpu_tensor,
                                   double rtol = 1e-4, double atol = 1e-6) {
    const std::vector<float> e = cpu_tensor.to_vector();
    return close_to(gpu_tensor, std::vector<double>(e.begin(), e.end()), rtol, atol);
  }
  // The same against the double-precision reference (the layers' ref:: oracle).
  ::testing::AssertionResult close(const Tensor& gpu_tensor, const ref::Array& expected,
                                   double rtol = 1e-4, double atol = 1e-6) {
    return close_to(gpu_tensor, expected.data, rtol, atol);
  }
  // The reference's view of a host tensor (logical NCHW order, any layout).
  static ref::Array ref_of(const Tensor& host) { return ref::from_tensor(host); }
  // a + b: what a gradient that accumulates onto `a` should hold.
  static ref::Array plus(const ref::Array& a, const ref::Array& b) {
    ref::Array sum = a;
    for (int64_t i = 0; i < sum.numel(); ++i) sum[i] += b[i];
    return sum;
  }

 private:
  ::testing::AssertionResult close_to(const Tensor& gpu_tensor, const std::vector<double>& e,
                                      double rtol, double atol) {
    const Tensor got = download(gpu_tensor);
    const std::vector<float> a = got.to_vector();
    if (a.size() != e.size()) return ::testing::AssertionFailure() << "sizes differ";
    double scale = 0.0;
    for (double v : e) scale = std::max(scale, std::abs(v));
    const double bound = rtol * scale + atol;
    std::size_t worst = 0;
    double worst_err = -1.0;
    for (std::size_t i = 0; i < a.size(); ++i) {
      const double err = std::abs(static_cast<double>(a[i]) - e[i]);
      if (std::isnan(err))
        return ::testing::AssertionFailure()
               << "element " << i << ": gpu " << a[i] << ", expected " << e[i] << " (NaN)";
      if (err > worst_err) worst_err = err, worst = i;
    }
    if (a.empty() || worst_err <= bound) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure()
           << "element " << worst << ": gpu " << a[worst] << ", expected " << e[worst] << ", error "
           << worst_err << " > bound " << bound << " (max|expected| " << scale << ")";
  }

  static constexpr int64_t kGuard = 1024;
  static constexpr float kSentinel = std::numeric_limits<float>::quiet_NaN();
  Context cpu_;
  std::unique_ptr<Context> gpu_;
  std::vector<Tensor> guarded_;  // allocations behind guarded_zeros()
  std::mt19937 rng_{1234};
};

}  // namespace convnet::testing
