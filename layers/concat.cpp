#include "layers/concat.h"

#include <sstream>

namespace convnet {
namespace {

std::string shapes_text(const std::vector<Shape>& shapes) {
  std::ostringstream out;
  out << "[";
  for (std::size_t k = 0; k < shapes.size(); ++k) out << (k ? ", " : "") << shapes[k];
  out << "]";
  return out.str();
}

std::string strides_text(const std::vector<int64_t>& strides) {
  return to_string(Shape(strides));  // same "(a, b, c)" formatting
}

}  // namespace

Concat::Concat(std::string name, const ConcatOptions& options,
               const std::vector<Shape>& input_shapes)
    : name_(std::move(name)), options_(options), input_shapes_(input_shapes) {
  CONVNET_CHECK(!input_shapes.empty(), "layer ", name_, ": concat of no inputs");
  const Shape& first = input_shapes.front();
  int64_t channels = 0;
  for (std::size_t k = 0; k < input_shapes.size(); ++k) {
    const Shape& s = input_shapes[k];
    CONVNET_CHECK(s.rank() == 4 && s.all_positive(), "layer ", name_, ": input ", k, " has shape ",
                  s, ", expected (N, C, H, W) with every extent > 0; inputs ",
                  shapes_text(input_shapes));
    CONVNET_CHECK(s[0] == first[0] && s[2] == first[2] && s[3] == first[3], "layer ", name_,
                  ": input ", k, " has shape ", s, " but input 0 has shape ", first,
                  "; N, H and W must be equal; inputs ", shapes_text(input_shapes));
    channels += s[1];
  }
  output_shape_ = Shape{first[0], channels, first[2], first[3]};
  const int64_t block = channel_block(options.layout);
  CONVNET_CHECK(options.layout == Layout::nchw || (block > 1 && options.output_strides.empty()),
                "layer ", name_, ": concatenation in ", to_string(options.layout),
                " (plain nchw, or a blocked layout without output strides)");
  for (const Shape& s : input_shapes)
    CONVNET_CHECK(s[1] % block == 0, "layer ", name_, ": ", s[1], " channels are not whole ",
                  to_string(options.layout), " blocks; inputs ", shapes_text(input_shapes));
  output_strides_ =
      options.output_strides.empty() ? output_shape_.contiguous_strides() : options.output_strides;
  const std::vector<int64_t>& st = output_strides_;
  const Shape& y = output_shape_;
  CONVNET_CHECK(st.size() == 4 && st[3] == 1 && st[2] >= y[3] && st[1] >= y[2] * st[2] &&
                    st[0] >= y[1] * st[1],
                "layer ", name_, ": output strides ", strides_text(st), " for output shape ", y,
                " are not a non-overlapping (N, C, H, W) layout with unit W stride");
}

std::unique_ptr<Concat> Concat::create(Context& context, std::string name,
                                       const ConcatOptions& options,
                                       const std::vector<Shape>& input_shapes) {
  return create_on_backend(context, make_concat_onednn, CONVNET_GPU_FACTORY(make_concat_cuda),
                           std::move(name), options, input_shapes);
}

void Concat::forward(const std::vector<Tensor>& inputs, const Tensor& y) {
  CONVNET_CHECK(inputs.size() == input_shapes_.size(), "layer ", name_, ": got ", inputs.size(),
                " inputs, expected ", input_shapes_.size());
  if (is_blocked(options_.layout)) {
    for (std::size_t k = 0; k < inputs.size(); ++k)
      check_tensor(name_, ("input " + std::to_string(k)).c_str(), inputs[k], input_shapes_[k],
                   options_.layout);
    check_tensor(name_, "output", y, output_shape_, options_.layout);
    forward_impl(inputs, y);
    return;
  }
  for (std::size_t k = 0; k < inputs.size(); ++k)
    check_tensor(name_, ("input " + std::to_string(k)).c_str(), inputs[k], input_shapes_[k]);
  check_tensor(name_, "output", y, output_shape_, Strides::any);
  for (int i = 0; i < 4; ++i)  // the stride of an extent-1 dimension is never used
    CONVNET_CHECK(output_shape_[i] == 1 || y.strides()[i] == output_strides_[i], "layer ", name_,
                  ": output has strides ", strides_text(y.strides()),
                  ", but the layer was built for ", strides_text(output_strides_),
                  " (ConcatOptions::output_strides)");
  forward_impl(inputs, y);
}

void Concat::backward(const Tensor& dy, const std::vector<Tensor>& dinputs,
                      const std::vector<GradMode>& dinput_modes) {
  const bool blocked = is_blocked(options_.layout);
  if (blocked)
    check_tensor(name_, "output gradient", dy, output_shape_, options_.layout);
  else
    check_tensor(name_, "output gradient", dy, output_shape_, Strides::any);
  CONVNET_CHECK(dinputs.size() == input_shapes_.size() && dinput_modes.size() == dinputs.size(),
                "layer ", name_, ": got ", dinputs.size(), " input gradients and ",
                dinput_modes.size(), " modes, expected ", input_shapes_.size(), " of each");
  for (std::size_t k = 0; k < dinputs.size(); ++k) {
    if (!dinputs[k].defined()) continue;
    const std::string label = "input gradient " + std::to_string(k);
    if (blocked)
      check_tensor(name_, label.c_str(), dinputs[k], input_shapes_[k], options_.layout);
    else
      check_tensor(name_, label.c_str(), dinputs[k], input_shapes_[k], Strides::any);
  }
  backward_impl(dy, dinputs, dinput_modes);
}

}  // namespace convnet
