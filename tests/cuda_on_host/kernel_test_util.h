// Helpers of the host-run kernel tests: random data, the element index of
// (sample, channel, position) in NCHW or NHWC, bf16 copies, and a fixture
// that runs each test under both scheduling orders of cuda_on_host.h.
#pragma once

#include "tests/cuda_on_host/cuda_on_host.h"
// cuda_on_host.h comes first.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

namespace convnet::cuda_on_host {

inline std::vector<float> random_floats(size_t count, uint32_t seed, float lo = -1.0f,
                                        float hi = 1.0f) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(count);
  for (float& x : v) x = dist(gen);
  return v;
}

// Element (sample s, channel ch, position p) of an (n, c, hw) tensor.
inline int64_t element(int64_t s, int64_t ch, int64_t p, int64_t c, int64_t hw,
                       bool channels_last) {
  return channels_last ? (s * hw + p) * c + ch : (s * c + ch) * hw + p;
}

inline std::vector<__nv_bfloat16> to_bf16(const std::vector<float>& v) {
  std::vector<__nv_bfloat16> out;
  out.reserve(v.size());
  for (float x : v) out.push_back(__float2bfloat16(x));
  return out;
}

inline std::vector<float> to_float(const std::vector<__nv_bfloat16>& v) {
  std::vector<float> out;
  out.reserve(v.size());
  for (__nv_bfloat16 x : v) out.push_back(__bfloat162float(x));
  return out;
}

// Each test runs with blocks and threads in forward and in reverse order.
class OnHost : public ::testing::TestWithParam<Order> {
 protected:
  void SetUp() override { set_order(GetParam()); }
  void TearDown() override { set_order(Order::forward); }
};

#define CONVNET_ON_HOST_ORDERS(suite)                                                         \
  INSTANTIATE_TEST_SUITE_P(                                                                   \
      Orders, suite,                                                                          \
      ::testing::Values(::convnet::cuda_on_host::Order::forward,                              \
                        ::convnet::cuda_on_host::Order::reverse),                             \
      [](const auto& info) {                                                                  \
        return info.param == ::convnet::cuda_on_host::Order::forward ? "forward" : "reverse"; \
      })

}  // namespace convnet::cuda_on_host
