#include "core/onednn.h"

namespace convnet {

dnnl::memory::desc onednn_desc(const Shape& shape, const std::vector<int64_t>& strides) {
  return dnnl::memory::desc(shape.dims(), dnnl::memory::data_type::f32, strides);
}

dnnl::memory::desc onednn_desc(const Tensor& tensor) {
  CONVNET_CHECK(tensor.dtype() == DType::f32, "the CPU backend computes in f32, got ",
                to_string(tensor.dtype()));
  if (is_blocked(tensor.layout())) return onednn_desc(tensor.shape(), tensor.layout());
  return onednn_desc(tensor.shape(), tensor.strides());
}

dnnl::memory::desc onednn_desc(const Shape& shape, Layout layout) {
  using tag = dnnl::memory::format_tag;
  CONVNET_CHECK(shape.rank() == 4 || layout == Layout::nchw, "layout ", to_string(layout),
                " needs a rank-4 shape, got ", shape);
  if (layout == Layout::nchw) return onednn_desc(shape, shape.contiguous_strides());
  if (layout == Layout::nhwc) return onednn_desc(shape, channels_last_strides(shape));
  return dnnl::memory::desc(shape.dims(), dnnl::memory::data_type::f32,
                            layout == Layout::nchw16c ? tag::nChw16c : tag::nChw8c);
}

namespace {
// The channel block of a blocked descriptor (1 when it is not blocked).
int64_t desc_channel_block(const dnnl::memory::desc& desc) {
  const auto& blocking = desc.data.format_desc.blocking;
  if (desc.data.format_kind != dnnl_blocked || blocking.inner_nblks == 0) return 1;
  return blocking.inner_blks[0];
}
}  // namespace

Layout cpu_preferred_blocked_layout() {
  // A ResNet-50 3x3 convolution with its activation layout left to oneDNN:
  // the source format its best kernel on this CPU asks for.
  using dnnl::memory;
  const dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  const memory::desc x(memory::dims{16, 64, 56, 56}, memory::data_type::f32,
                       memory::format_tag::any);
  const memory::desc w(memory::dims{64, 64, 3, 3}, memory::data_type::f32, memory::format_tag::any);
  const dnnl::convolution_forward::desc desc(
      dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, x, w, memory::desc(),
      x, memory::dims{1, 1}, memory::dims{1, 1}, memory::dims{1, 1});
  const dnnl::convolution_forward::primitive_desc pd(desc, engine);
  return desc_channel_block(pd.src_desc()) == 16 ? Layout::nchw16c : Layout::nchw8c;
}

dnnl::memory onednn_memory(const dnnl::memory::desc& desc, const dnnl::engine& engine,
                           const Tensor& tensor) {
  CONVNET_CHECK(tensor.device() == Device::cpu, "oneDNN memory from a device tensor");
  CONVNET_CHECK(desc_channel_block(desc) == channel_block(tensor.layout()), "tensor of shape ",
                tensor.shape(), " has layout ", to_string(tensor.layout()),
                " but the primitive was built for a block of ", desc_channel_block(desc),
                " channels");
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
