// Shape: the extents of a tensor, outermost first, e.g. (N, C, H, W).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <ostream>
#include <string>
#include <vector>

namespace convnet {

class Shape {
 public:
  Shape() = default;
  Shape(std::initializer_list<int64_t> dims) : dims_(dims) {}
  explicit Shape(std::vector<int64_t> dims) : dims_(std::move(dims)) {}

  int rank() const { return static_cast<int>(dims_.size()); }
  // Negative index counts from the end, as in Python.
  int64_t operator[](int i) const { return dims_.at(i < 0 ? i + rank() : i); }
  int64_t& operator[](int i) { return dims_.at(i < 0 ? i + rank() : i); }
  const std::vector<int64_t>& dims() const { return dims_; }

  // Product of the extents (1 for a rank-0 shape).
  int64_t numel() const;
  // Row-major (C-contiguous) strides in elements.
  std::vector<int64_t> contiguous_strides() const;
  // True when every extent is > 0.
  bool all_positive() const;

  bool operator==(const Shape& other) const { return dims_ == other.dims_; }
  bool operator!=(const Shape& other) const { return dims_ != other.dims_; }

 private:
  std::vector<int64_t> dims_;
};

// "(2, 3, 4)"
std::string to_string(const Shape& shape);
std::ostream& operator<<(std::ostream& out, const Shape& shape);

}  // namespace convnet
