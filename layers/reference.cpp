#include "layers/reference.h"

namespace convnet::ref {

Array from_tensor(const Tensor& tensor) {
  Array array(tensor.shape());
  const std::vector<float> values = tensor.to_vector();
  for (int64_t i = 0; i < array.numel(); ++i) array[i] = values[i];
  return array;
}

Tensor to_tensor(const Array& array, Allocator& allocator) {
  Tensor t = Tensor::empty(array.shape, allocator);
  float* p = t.data<float>();
  for (int64_t i = 0; i < array.numel(); ++i) p[i] = static_cast<float>(array[i]);
  return t;
}

}  // namespace convnet::ref
