#include "core/onednn.h"

namespace convnet {

dnnl::memory::data_type onednn_data_type(DType dtype) {
  CONVNET_CHECK(dtype != DType::f16, "the CPU backend computes in f32 or bf16, got f16");
  return dtype == DType::bf16 ? dnnl::memory::data_type::bf16 : dnnl::memory::data_type::f32;
}

dnnl::memory::desc onednn_desc(const Shape& shape, const std::vector<int64_t>& strides,
                               DType dtype) {
  return dnnl::memory::desc(shape.dims(), onednn_data_type(dtype), strides);
}

dnnl::memory::desc onednn_desc(const Tensor& tensor) {
  if (is_blocked(tensor.layout()))
    return onednn_desc(tensor.shape(), tensor.layout(), tensor.dtype());
  return onednn_desc(tensor.shape(), tensor.strides(), tensor.dtype());
}

dnnl::memory::desc onednn_desc(const Shape& shape, Layout layout, DType dtype) {
  using tag = dnnl::memory::format_tag;
  CONVNET_CHECK(shape.rank() == 4 || layout == Layout::nchw, "layout ", to_string(layout),
                " needs a rank-4 shape, got ", shape);
  if (layout == Layout::nchw) return onednn_desc(shape, shape.contiguous_strides(), dtype);
  if (layout == Layout::nhwc) return onednn_desc(shape, channels_last_strides(shape), dtype);
  return dnnl::memory::desc(shape.dims(), onednn_data_type(dtype),
                            layout == Layout::nchw16c ? tag::nChw16c : tag::nChw8c);
}

namespace {
// The channel block of a blocked descriptor (1 when it is not blocked).
int64_t desc_channel_block(const dnnl::memory::desc& desc) {
  const auto& blocking = desc.data.format_desc.blocking;
  if (desc.data.format_kind != dnnl_blocked || blocking.inner_nblks == 0) return 1;
  return blocking.inner_blks[0];
}
// The source format oneDNN's best kernel on this CPU asks for, for a
// ResNet-50 3x3 convolution in `dtype` with its activation layout left open.
dnnl::memory::desc preferred_conv_source(DType dtype) {
  using dnnl::memory;
  const dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  const memory::desc x(memory::dims{16, 64, 56, 56}, onednn_data_type(dtype),
                       memory::format_tag::any);
  const memory::desc w(memory::dims{64, 64, 3, 3}, onednn_data_type(dtype),
                       memory::format_tag::any);
  const dnnl::convolution_forward::desc desc(
      dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, x, w, memory::desc(),
      x, memory::dims{1, 1}, memory::dims{1, 1}, memory::dims{1, 1});
  return dnnl::convolution_forward::primitive_desc(desc, engine).src_desc();
}
}  // namespace

Layout cpu_preferred_blocked_layout() {
  return desc_channel_block(preferred_conv_source(DType::f32)) == 16 ? Layout::nchw16c
                                                                     : Layout::nchw8c;
}

Layout cpu_preferred_layout(DType dtype) {
  if (dtype == DType::f32 || !cpu_has_bf16()) return cpu_preferred_blocked_layout();
  const dnnl::memory::desc source = preferred_conv_source(dtype);
  const auto& blocking = source.data.format_desc.blocking;
  const bool channels_last = source.data.format_kind == dnnl_blocked && blocking.inner_nblks == 0 &&
                             blocking.strides[1] == 1;
  if (channels_last) return Layout::nhwc;  // AMX's bf16 kernels
  return desc_channel_block(source) == 16 ? Layout::nchw16c : Layout::nchw8c;
}

void onednn_copy(const Tensor& dst, const Tensor& src, bool accumulate) {
  static const dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  onednn_call("copying a gradient", [&] {
    const dnnl::memory::desc dst_md = onednn_desc(dst), src_md = onednn_desc(src);
    dnnl::primitive_attr attr;
    if (accumulate) {
      dnnl::post_ops sum;
      sum.append_sum(1.0f);
      attr.set_post_ops(sum);
    }
    const dnnl::reorder::primitive_desc pd(engine, src_md, engine, dst_md, attr);
    dnnl::memory source = onednn_memory(src_md, engine, src),
                 target = onednn_memory(dst_md, engine, dst);
    dnnl::stream stream(engine);
    dnnl::reorder(pd).execute(stream, source, target);
    stream.wait();
  });
}

bool cpu_has_bf16() {
  const auto isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
  const auto bf16 = static_cast<unsigned>(dnnl::cpu_isa::avx512_core_bf16);
  return (isa & bf16) == bf16;  // oneDNN's ISA values are sets of feature bits
}

dnnl::memory onednn_memory(const dnnl::memory::desc& desc, const dnnl::engine& engine,
                           const Tensor& tensor) {
  CONVNET_CHECK(tensor.device() == Device::cpu, "oneDNN memory from a device tensor");
  CONVNET_CHECK(desc.data_type() == onednn_data_type(tensor.dtype()), "tensor of shape ",
                tensor.shape(), " holds ", to_string(tensor.dtype()),
                " but the primitive was built for another element type");
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
