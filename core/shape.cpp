#include "core/shape.h"

#include <sstream>

namespace convnet {

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int64_t d : dims_) n *= d;
  return n;
}

std::vector<int64_t> Shape::contiguous_strides() const {
  std::vector<int64_t> strides(dims_.size());
  int64_t stride = 1;
  for (int i = rank() - 1; i >= 0; --i) {
    strides[i] = stride;
    stride *= dims_[i];
  }
  return strides;
}

bool Shape::all_positive() const {
  for (int64_t d : dims_)
    if (d <= 0) return false;
  return true;
}

std::string to_string(const Shape& shape) {
  std::ostringstream out;
  out << "(";
  for (int i = 0; i < shape.rank(); ++i) out << (i ? ", " : "") << shape[i];
  out << ")";
  return out.str();
}

std::ostream& operator<<(std::ostream& out, const Shape& shape) { return out << to_string(shape); }

}  // namespace convnet
