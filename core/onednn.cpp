#include "core/onednn.h"

namespace convnet {

dnnl::memory::desc onednn_desc(const Shape& shape, const std::vector<int64_t>& strides) {
  return dnnl::memory::desc(shape.dims(), dnnl::memory::data_type::f32, strides);
}

dnnl::memory::desc onednn_desc(const Tensor& tensor) {
  CONVNET_CHECK(tensor.dtype() == DType::f32, "the CPU backend computes in f32, got ",
                to_string(tensor.dtype()));
  return onednn_desc(tensor.shape(), tensor.strides());
}

dnnl::memory onednn_memory(const dnnl::memory::desc& desc, const dnnl::engine& engine,
                           const Tensor& tensor) {
  CONVNET_CHECK(tensor.device() == Device::cpu, "oneDNN memory from a device tensor");
  // A primitive built for plain memory must get a tensor with the same strides,
  // otherwise it would read the wrong elements.
  const auto& blocking = desc.data.format_desc.blocking;
  if (desc.data.format_kind == dnnl_blocked && blocking.inner_nblks == 0 &&
      desc.data.ndims == tensor.rank()) {
    for (int i = 0; i < tensor.rank(); ++i) {
      CONVNET_CHECK(tensor.shape()[i] == 1 || blocking.strides[i] == tensor.strides()[i],
                    "tensor of shape ", tensor.shape(),
                    " has a memory layout (strides) that this primitive was not built for");
    }
  }
  return dnnl::memory(desc, engine, tensor.raw_data());
}

}  // namespace convnet
