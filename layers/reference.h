// The plain C++ reference implementation: simple loops in double precision,
// used only as the oracle of the tests (finite-difference gradient checks and
// backend parity). Each layer's X_ref.cpp implements its functions here.
#pragma once

#include <vector>

#include "core/allocator.h"
#include "core/shape.h"
#include "core/tensor.h"

namespace convnet::ref {

// A dense row-major array of doubles.
struct Array {
  Shape shape;
  std::vector<double> data;

  Array() = default;
  explicit Array(const Shape& s, double value = 0.0) : shape(s), data(s.numel(), value) {}

  int64_t numel() const { return static_cast<int64_t>(data.size()); }
  double& operator[](int64_t i) { return data[i]; }
  double operator[](int64_t i) const { return data[i]; }
  // 4-D index (n, c, h, w) into an (N, C, H, W) array.
  double& at(int64_t n, int64_t c, int64_t h, int64_t w) {
    return data[((n * shape[1] + c) * shape[2] + h) * shape[3] + w];
  }
  double at(int64_t n, int64_t c, int64_t h, int64_t w) const {
    return data[((n * shape[1] + c) * shape[2] + h) * shape[3] + w];
  }
  // 2-D index (i, j) into an (I, J) array.
  double& at(int64_t i, int64_t j) { return data[i * shape[1] + j]; }
  double at(int64_t i, int64_t j) const { return data[i * shape[1] + j]; }
};

Array from_tensor(const Tensor& tensor);
// A new contiguous f32 tensor holding the array's values.
Tensor to_tensor(const Array& array, Allocator& allocator);

}  // namespace convnet::ref
