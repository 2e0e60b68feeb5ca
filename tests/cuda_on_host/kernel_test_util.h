// Helpers of the host-run kernel tests: random data, the element index of
// (sample, channel, position) in NCHW or NHWC, bf16 copies, and a fixture
// that runs each test under both scheduling orders of cuda_on_host.h.
#pragma once

#include "tests/cuda_on_host/cuda_on_host.h"
// cuda_on_host.h comes first.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <type_traits>
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

// Half-precision copies (round to nearest even) and back.
template <typename T>
std::vector<T> to_half(const std::vector<float>& v) {
  std::vector<T> out;
  out.reserve(v.size());
  for (float x : v) {
    if constexpr (std::is_same_v<T, __half>)
      out.push_back(__float2half(x));
    else
      out.push_back(__float2bfloat16(x));
  }
  return out;
}

inline float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
inline float to_float(__half x) { return __half2float(x); }

template <typename T>
std::vector<float> to_float(const std::vector<T>& v) {
  std::vector<float> out;
  out.reserve(v.size());
  for (T x : v) out.push_back(to_float(x));
  return out;
}

// Element-wise |got - want| <= tolerance * max(1, |want|); the first miss fails.
inline void expect_close(const std::vector<float>& got, const std::vector<double>& want,
                         const std::string& what, double tolerance = 1e-5) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], want[i], tolerance * std::max(1.0, std::abs(want[i])))
        << what << " [" << i << "]";
}

// Each test runs in every scheduling order of cuda_on_host.h.
class OnHost : public ::testing::TestWithParam<Order> {
 protected:
  void SetUp() override { set_order(GetParam()); }
  void TearDown() override { set_order(Order::forward); }
};

inline const char* order_name(Order order) {
  return order == Order::forward ? "forward" : order == Order::reverse ? "reverse" : "warp_greedy";
}

#define CONVNET_ON_HOST_ORDERS(suite)                                                             \
  INSTANTIATE_TEST_SUITE_P(Orders, suite,                                                         \
                           ::testing::Values(::convnet::cuda_on_host::Order::forward,             \
                                             ::convnet::cuda_on_host::Order::reverse,             \
                                             ::convnet::cuda_on_host::Order::warp_greedy),        \
                           [](const auto& info) {                                                 \
                             return std::string(::convnet::cuda_on_host::order_name(info.param)); \
                           })

}  // namespace convnet::cuda_on_host
