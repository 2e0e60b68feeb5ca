#include "layers/channel_gate.h"

namespace convnet {

ChannelGate::ChannelGate(std::string name, const Shape& input_shape, const Shape& gate_shape,
                         Layout layout)
    : name_(std::move(name)), input_shape_(input_shape), gate_shape_(gate_shape), layout_(layout) {
  CONVNET_CHECK(input_shape.rank() == 4 && input_shape.all_positive(), "layer ", name_,
                ": input shape ", input_shape, " must be (N, C, H, W) with every extent > 0 (gate ",
                gate_shape, ")");
  CONVNET_CHECK(gate_shape == (Shape{input_shape[0], input_shape[1]}), "layer ", name_,
                ": gate shape ", gate_shape, " does not match input shape ", input_shape,
                "; expected (N, C) = ", Shape{input_shape[0], input_shape[1]});
  check_layout(name_, input_shape, layout);
  CONVNET_CHECK(input_shape[1] % channel_block(layout) == 0, "layer ", name_, ": the ",
                to_string(layout), " gate needs channels that are a multiple of ",
                channel_block(layout), ", got ", input_shape);
}

std::unique_ptr<ChannelGate> ChannelGate::create(Context& context, std::string name,
                                                 const Shape& input_shape, const Shape& gate_shape,
                                                 Layout layout) {
  return create_on_backend(context, make_channel_gate_onednn,
                           CONVNET_GPU_FACTORY(make_channel_gate_cuda), std::move(name),
                           input_shape, gate_shape, layout);
}

void ChannelGate::forward(const Tensor& x, const Tensor& s, const Tensor& y) {
  check_tensor(name_, "input", x, input_shape_, layout_);
  check_tensor(name_, "gate logits", s, gate_shape_);
  check_tensor(name_, "output", y, input_shape_, layout_);
  forward_impl(x, s, y);
}

void ChannelGate::backward(const Tensor& x, const Tensor& s, const Tensor& dy, const Tensor& dx,
                           GradMode dx_mode, const Tensor& ds, GradMode ds_mode) {
  check_tensor(name_, "input", x, input_shape_, layout_);
  check_tensor(name_, "gate logits", s, gate_shape_);
  check_tensor(name_, "output gradient", dy, input_shape_, layout_);
  if (dx.defined()) check_tensor(name_, "input gradient", dx, input_shape_, layout_);
  if (ds.defined()) check_tensor(name_, "gate logits gradient", ds, gate_shape_);
  backward_impl(x, s, dy, dx, dx_mode, ds, ds_mode);
}

}  // namespace convnet
