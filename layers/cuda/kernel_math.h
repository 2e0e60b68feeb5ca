// The arithmetic of the GPU backend's CUDA kernels, one function per output
// element (or per output row/plane for small reductions), callable from
// device and host code. layers/cuda/*.cu run each in a grid-stride loop on the
// GPU; tests/layers/kernel_math_test.cpp runs the same functions in host
// loops against the CPU layers, so the index arithmetic and formulas are
// checked on machines without a GPU (CI). Plain C++ outside nvcc.
//
// Conventions as in kernels.h: logical (N, C, H, W) stored dense row-major
// (NCHW), or channels-last (NHWC) where a function takes `channels_last`;
// "accumulate" means dst += value. Activations (x, y, dx, dy, s, ds) are of
// an element type T: float, or on the GPU __nv_bfloat16 / __half (mixed
// precision); every function reads them as float (`load`), computes in
// float and rounds once when it stores (`store`). Per-channel parameters and
// statistics (mean, inv_std, gamma, beta) and the optimizer's buffers are
// always float.
#pragma once

#include <cfloat>
#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define CONVNET_HD __host__ __device__
#else
#define CONVNET_HD
#endif

namespace convnet::cuda {

// Up to rank 4 (missing leading dims have extent 1): dst[i] (+)= src[i] with
// element strides per tensor.
struct Strided4 {
  int64_t shape[4];
  int64_t dst_strides[4];
  int64_t src_strides[4];
};

struct Window2d {
  int64_t n, c, h, w;  // input
  int64_t out_h, out_w;
  int64_t kernel, stride, padding;
  bool channels_last = false;  // x, y, dx, dy stored NHWC
};

namespace math {

CONVNET_HD inline int64_t smaller(int64_t a, int64_t b) { return a < b ? a : b; }
CONVNET_HD inline int64_t larger(int64_t a, int64_t b) { return a > b ? a : b; }
template <typename T>
CONVNET_HD inline float load(const T& v) {
  return static_cast<float>(v);
}
template <typename T>
CONVNET_HD inline void store(T* dst, float value, bool accumulate) {
  *dst = T(accumulate ? static_cast<float>(*dst) + value : value);
}
CONVNET_HD inline float sigmoid(float v) { return 1.0f / (1.0f + expf(-v)); }

// Element i (logical row-major index over l.shape).
// dst and src may be of different element types (a conversion).
template <typename D, typename S>
CONVNET_HD inline void strided_copy(int64_t i, D* dst, const S* src, const Strided4& l,
                                    bool accumulate) {
  int64_t rest = i, d = 0, s = 0;
  for (int k = 3; k >= 0; --k) {
    const int64_t index = rest % l.shape[k];
    rest /= l.shape[k];
    d += index * l.dst_strides[k];
    s += index * l.src_strides[k];
  }
  store(dst + d, load(src[s]), accumulate);
}

// The channel of element i of an (N, C, HW) tensor stored NCHW or NHWC.
CONVNET_HD inline int64_t channel_of(int64_t i, int64_t c, int64_t hw, bool channels_last) {
  return channels_last ? i % c : (i / hw) % c;
}

// The offset of element j in [0, hw) of plane p = n * c + ch.
CONVNET_HD inline int64_t plane_offset(int64_t p, int64_t j, int64_t c, int64_t hw,
                                       bool channels_last) {
  return channels_last ? (p / c) * hw * c + j * c + p % c : p * hw + j;
}

// The plane n * c + ch of element i.
CONVNET_HD inline int64_t plane_of(int64_t i, int64_t c, int64_t hw, bool channels_last) {
  return channels_last ? (i / (hw * c)) * c + i % c : i / hw;
}

// gamma * (x - mean) * inv_std + beta for element i of an (N, C, HW) tensor.
template <typename T>
CONVNET_HD inline float batch_norm_value(const T* x, const float* mean, const float* inv_std,
                                         const float* gamma, const float* beta, int64_t i,
                                         int64_t c, int64_t hw, bool channels_last) {
  const int64_t ch = channel_of(i, c, hw, channels_last);
  return gamma[ch] * (load(x[i]) - mean[ch]) * inv_std[ch] + beta[ch];
}

// Output element i of a pooling window map: its column, row and plane n * c + ch.
CONVNET_HD inline void output_position(int64_t i, const Window2d& w, int64_t& ox, int64_t& oy,
                                       int64_t& plane) {
  if (w.channels_last) {
    const int64_t pixel = i / w.c;
    ox = pixel % w.out_w;
    oy = (pixel / w.out_w) % w.out_h;
    plane = (pixel / (w.out_w * w.out_h)) * w.c + i % w.c;
  } else {
    ox = i % w.out_w;
    oy = (i / w.out_w) % w.out_h;
    plane = i / (w.out_w * w.out_h);
  }
}
// Input element i: its column, row and plane.
CONVNET_HD inline void input_position(int64_t i, const Window2d& w, int64_t& ix, int64_t& iy,
                                      int64_t& plane) {
  if (w.channels_last) {
    const int64_t pixel = i / w.c;
    ix = pixel % w.w;
    iy = (pixel / w.w) % w.h;
    plane = (pixel / (w.w * w.h)) * w.c + i % w.c;
  } else {
    ix = i % w.w;
    iy = (i / w.w) % w.h;
    plane = i / (w.w * w.h);
  }
}
// The offset of position `pixel` (row * width + column) of plane n * c + ch.
CONVNET_HD inline int64_t input_offset(const Window2d& w, int64_t plane, int64_t pixel) {
  return w.channels_last ? (plane / w.c) * w.h * w.w * w.c + pixel * w.c + plane % w.c
                         : plane * w.h * w.w + pixel;
}
CONVNET_HD inline int64_t output_offset(const Window2d& w, int64_t plane, int64_t pixel) {
  return w.channels_last ? (plane / w.c) * w.out_h * w.out_w * w.c + pixel * w.c + plane % w.c
                         : plane * w.out_h * w.out_w + pixel;
}

// Output element i (of N*C*out_h*out_w): the maximum over its window and its
// index in the (h, w) plane (the first on ties; NaN wins; padding never does).
template <typename T>
CONVNET_HD inline void max_pool_forward(int64_t i, const T* x, T* y, int32_t* argmax,
                                        const Window2d& w) {
  int64_t ox, oy, plane;
  output_position(i, w, ox, oy, plane);
  float best = -FLT_MAX;
  int32_t best_index = -1;
  for (int64_t ky = 0; ky < w.kernel; ++ky) {
    const int64_t iy = oy * w.stride - w.padding + ky;
    if (iy < 0 || iy >= w.h) continue;
    for (int64_t kx = 0; kx < w.kernel; ++kx) {
      const int64_t ix = ox * w.stride - w.padding + kx;
      if (ix < 0 || ix >= w.w) continue;
      const float v = load(x[input_offset(w, plane, iy * w.w + ix)]);
      if (best_index >= 0 && best != best) continue;  // a NaN stays the maximum
      if (best_index < 0 || v > best || v != v) {
        best = v;
        best_index = static_cast<int32_t>(iy * w.w + ix);
      }
    }
  }
  y[i] = T(best);
  if (argmax) argmax[i] = best_index;
}

// The output windows that contain input row (or column) i: [first, last].
CONVNET_HD inline void covering(int64_t i, int64_t kernel, int64_t stride, int64_t padding,
                                int64_t out, int64_t& first, int64_t& last) {
  const int64_t p = i + padding;
  first = p < kernel ? 0 : (p - kernel) / stride + 1;
  last = smaller(p / stride, out - 1);
}

// Input element i (of N*C*h*w): the sum of dy over the windows whose argmax it is.
template <typename T>
CONVNET_HD inline void max_pool_backward(int64_t i, const T* dy, const int32_t* argmax, T* dx,
                                         bool accumulate, const Window2d& w) {
  int64_t ix, iy, plane;
  input_position(i, w, ix, iy, plane);
  int64_t y0, y1, x0, x1;
  covering(iy, w.kernel, w.stride, w.padding, w.out_h, y0, y1);
  covering(ix, w.kernel, w.stride, w.padding, w.out_w, x0, x1);
  const int32_t self = static_cast<int32_t>(iy * w.w + ix);
  float sum = 0.0f;
  for (int64_t oy = y0; oy <= y1; ++oy)
    for (int64_t ox = x0; ox <= x1; ++ox) {
      const int64_t o = output_offset(w, plane, oy * w.out_w + ox);
      if (argmax[o] == self) sum += load(dy[o]);
    }
  store(dx + i, sum, accumulate);
}

CONVNET_HD inline float window_count(const Window2d& w, int64_t oy, int64_t ox, bool include_pad) {
  if (include_pad) return static_cast<float>(w.kernel * w.kernel);
  const int64_t y0 = larger(oy * w.stride - w.padding, 0);
  const int64_t y1 = smaller(oy * w.stride - w.padding + w.kernel, w.h);
  const int64_t x0 = larger(ox * w.stride - w.padding, 0);
  const int64_t x1 = smaller(ox * w.stride - w.padding + w.kernel, w.w);
  return static_cast<float>((y1 - y0) * (x1 - x0));
}

template <typename T>
CONVNET_HD inline void avg_pool_forward(int64_t i, const T* x, T* y, const Window2d& w,
                                        bool include_pad) {
  int64_t ox, oy, plane;
  output_position(i, w, ox, oy, plane);
  float sum = 0.0f;
  for (int64_t ky = 0; ky < w.kernel; ++ky) {
    const int64_t iy = oy * w.stride - w.padding + ky;
    if (iy < 0 || iy >= w.h) continue;
    for (int64_t kx = 0; kx < w.kernel; ++kx) {
      const int64_t ix = ox * w.stride - w.padding + kx;
      if (ix >= 0 && ix < w.w) sum += load(x[input_offset(w, plane, iy * w.w + ix)]);
    }
  }
  y[i] = T(sum / window_count(w, oy, ox, include_pad));
}

template <typename T>
CONVNET_HD inline void avg_pool_backward(int64_t i, const T* dy, T* dx, bool accumulate,
                                         const Window2d& w, bool include_pad) {
  int64_t ix, iy, plane;
  input_position(i, w, ix, iy, plane);
  int64_t y0, y1, x0, x1;
  covering(iy, w.kernel, w.stride, w.padding, w.out_h, y0, y1);
  covering(ix, w.kernel, w.stride, w.padding, w.out_w, x0, x1);
  float sum = 0.0f;
  for (int64_t oy = y0; oy <= y1; ++oy)
    for (int64_t ox = x0; ox <= x1; ++ox)
      sum += load(dy[output_offset(w, plane, oy * w.out_w + ox)]) /
             window_count(w, oy, ox, include_pad);
  store(dx + i, sum, accumulate);
}

// Plane p = n * c + ch of hw elements: y[p] = mean, serially.
template <typename T>
CONVNET_HD inline void global_avg_pool_forward(int64_t p, const T* x, T* y, int64_t c, int64_t hw,
                                               bool channels_last) {
  float sum = 0.0f;
  for (int64_t j = 0; j < hw; ++j) sum += load(x[plane_offset(p, j, c, hw, channels_last)]);
  y[p] = T(sum / static_cast<float>(hw));
}

template <typename T>
CONVNET_HD inline void global_avg_pool_backward(int64_t i, const T* dy, T* dx, int64_t c,
                                                int64_t hw, bool channels_last, bool accumulate) {
  store(dx + i, load(dy[plane_of(i, c, hw, channels_last)]) / static_cast<float>(hw), accumulate);
}

template <typename T>
CONVNET_HD inline void channel_gate_forward(int64_t i, const T* x, const T* s, T* y, int64_t c,
                                            int64_t hw, bool channels_last) {
  y[i] = T(load(x[i]) * sigmoid(load(s[plane_of(i, c, hw, channels_last)])));
}

// Plane p: dx (+)= dy * g over the plane (dx may be null), and
// ds[p] (+)= sum(dy * x) * g * (1 - g) (ds may be null), g = sigmoid(s[p]).
template <typename T>
CONVNET_HD inline void channel_gate_backward(int64_t p, const T* x, const T* s, const T* dy, T* dx,
                                             bool dx_accumulate, T* ds, bool ds_accumulate,
                                             int64_t c, int64_t hw, bool channels_last) {
  const float g = sigmoid(load(s[p]));
  float sum = 0.0f;
  for (int64_t j = 0; j < hw; ++j) {
    const int64_t i = plane_offset(p, j, c, hw, channels_last);
    sum += load(dy[i]) * load(x[i]);
    if (dx) store(dx + i, load(dy[i]) * g, dx_accumulate);
  }
  if (ds) store(ds + p, sum * g * (1.0f - g), ds_accumulate);
}

// Row r of (n, k) logits: log-sum-exp and the smoothed cross-entropy.
CONVNET_HD inline void softmax_cross_entropy_forward(int64_t r, const float* logits,
                                                     const int32_t* labels, float* row_loss,
                                                     float* log_sum_exp, int64_t k,
                                                     float smoothing) {
  const float* z = logits + r * k;
  float m = -FLT_MAX;
  for (int64_t j = 0; j < k; ++j) m = fmaxf(m, z[j]);
  float sum_exp = 0.0f, sum_z = 0.0f;
  for (int64_t j = 0; j < k; ++j) {
    sum_exp += expf(z[j] - m);
    sum_z += z[j];
  }
  const float lse = m + logf(sum_exp);
  log_sum_exp[r] = lse;
  row_loss[r] = lse - (1.0f - smoothing) * z[labels[r]] - smoothing / static_cast<float>(k) * sum_z;
}

CONVNET_HD inline void softmax_cross_entropy_backward(int64_t i, const float* logits,
                                                      const int32_t* labels,
                                                      const float* log_sum_exp, float* dlogits,
                                                      bool accumulate, int64_t n, int64_t k,
                                                      float smoothing) {
  const int64_t row = i / k, j = i % k;
  const float target =
      (j == labels[row] ? 1.0f - smoothing : 0.0f) + smoothing / static_cast<float>(k);
  store(dlogits + i, (expf(logits[i] - log_sum_exp[row]) - target) / static_cast<float>(n),
        accumulate);
}

// grad_scale multiplies the gradient first (1 / loss scale under fp16 loss scaling).
// Whether `label` is among the k largest of a row's `classes` logits: fewer
// than k other classes have a logit at least as large (ties count against
// the label, so constant logits are not "correct"; a NaN logit never is).
CONVNET_HD inline bool label_in_top_k(const float* row, int64_t classes, int64_t label, int64_t k) {
  const float target = row[label];
  if (target != target) return false;
  int64_t ahead = 0;
  for (int64_t c = 0; c < classes; ++c) ahead += c != label && !(row[c] < target);
  return ahead < k;
}

// The segment holding element i: the first k with i < ends[k] (ends
// ascending, count > 0, i < ends[count - 1]).
CONVNET_HD inline int64_t segment_of(int64_t i, const int64_t* ends, int64_t count) {
  int64_t lo = 0, hi = count - 1;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (i < ends[mid])
      hi = mid;
    else
      lo = mid + 1;
  }
  return lo;
}

CONVNET_HD inline void sgd_step(int64_t i, float* w, const float* g, float* v, float lr,
                                float momentum, float keep, float decay, bool first, bool nesterov,
                                float grad_scale = 1.0f) {
  float d = grad_scale == 1.0f ? g[i] + decay * w[i] : g[i] * grad_scale + decay * w[i];
  if (v) {
    v[i] = first ? d : momentum * v[i] + keep * d;
    d = nesterov ? d + momentum * v[i] : v[i];
  }
  w[i] -= lr * d;
}

}  // namespace math
}  // namespace convnet::cuda
