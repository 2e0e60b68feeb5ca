#include "core/onednn.h"

namespace convnet {

dnnl::memory::desc onednn_desc(const Shape& shape, const std::vector<int64_t>& strides) {
  return dnnl::memory::desc(shape.dims(), dnnl::memory::data_type::f32, strides);
}

dnnl::memory::desc onednn_desc(const Tensor& tensor) {
  CONVNET_CHECK(tensor.dtype() == DType::f32, "the CPU backend computes in f32, got ",
                to_string(tensor.dtype()));
  if (tensor.layout() == Layout::nchw8c) return onednn_desc(tensor.shape(), Layout::nchw8c);
  return onednn_desc(tensor.shape(), tensor.strides());
}

dnnl::memory::desc onednn_desc(const Shape& shape, Layout layout) {
  using tag = dnnl::memory::format_tag;
  CONVNET_CHECK(shape.rank() == 4 || layout == Layout::nchw, "layout ", to_string(layout),
                " needs a rank-4 shape, got ", shape);
  if (layout == Layout::nchw) return onednn_desc(shape, shape.contiguous_strides());
  if (layout == Layout::nhwc) return onednn_desc(shape, channels_last_strides(shape));
  return dnnl::memory::desc(shape.dims(), dnnl::memory::data_type::f32, tag::nChw8c);
}

dnnl::memory onednn_memory(const dnnl::memory::desc& desc, const dnnl::engine& engine,
                           const Tensor& tensor) {
  CONVNET_CHECK(tensor.device() == Device::cpu, "oneDNN memory from a device tensor");
  const bool blocked_desc =
      desc.data.format_kind == dnnl_blocked && desc.data.format_desc.blocking.inner_nblks > 0;
  CONVNET_CHECK(blocked_desc == (tensor.layout() == Layout::nchw8c), "tensor of shape ",
                tensor.shape(), " has layout ", to_string(tensor.layout()),
                " but the primitive was built for the other layout");
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
