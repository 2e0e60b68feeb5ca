#include "models/net.h"

#include <algorithm>

#include "core/error.h"

namespace convnet {

Net::Net(Context& context, ParamStore& store) : context_(context), store_(store) {}

ValueId Net::add_input(const Shape& shape) {
  CONVNET_CHECK(input_ < 0, "a net has one input");
  CONVNET_CHECK(shape.rank() == 4 && shape.all_positive(), "net input shape ", shape,
                " must be (N, C, H, W) with every extent > 0");
  values_.push_back({shape});
  input_ = static_cast<ValueId>(values_.size() - 1);
  return input_;
}

ValueId Net::add_op(std::unique_ptr<Op> op, std::vector<ValueId> inputs, const Shape& output_shape,
                    Layout output_layout) {
  CONVNET_CHECK(!planned_, "ops added after plan()");
  const int index = static_cast<int>(nodes_.size());
  for (ValueId v : inputs) {
    CONVNET_CHECK(v >= 0 && v < static_cast<ValueId>(values_.size()), "op input ", v,
                  " is not a value of this net");
    values_[root(v)].consumers.push_back(index);
  }
  values_.push_back({output_shape, output_layout, index});
  const ValueId out = static_cast<ValueId>(values_.size() - 1);
  nodes_.push_back({std::move(op), std::move(inputs), out});
  return out;
}

ValueId Net::add_reshape(ValueId value, const Shape& shape) {
  CONVNET_CHECK(values_.at(value).shape.numel() == shape.numel(), "cannot reshape ",
                values_.at(value).shape, " to ", shape);
  CONVNET_CHECK(values_.at(value).layout == Layout::nchw, "cannot reshape a blocked value");
  Value v{shape};
  v.view_of = root(value);
  values_.push_back(std::move(v));
  return static_cast<ValueId>(values_.size() - 1);
}

void Net::set_output(ValueId value) { output_ = value; }

ValueId Net::root(ValueId value) const {
  while (values_[value].view_of >= 0) value = values_[value].view_of;
  return value;
}

void Net::plan() {
  CONVNET_CHECK(!planned_, "Net::plan() called twice");
  CONVNET_CHECK(input_ >= 0 && output_ >= 0, "net without input or output");
  if (!store_.finalized()) store_.finalize(context_.allocator());
  Allocator& allocator = context_.allocator();

  // Activations, in op order so in-place and view sources exist first.
  for (ValueId id = 0; id < static_cast<ValueId>(values_.size()); ++id) {
    Value& v = values_[id];
    if (v.view_of >= 0) continue;
    if (v.producer >= 0) {
      const Node& node = nodes_[v.producer];
      const ValueId source = node.inputs.empty() ? -1 : node.inputs[0];
      if (source >= 0 && node.op->can_run_in_place() && source == root(source) &&
          source != input_ && values_[source].consumers.size() == 1 &&
          !nodes_[values_[source].producer].op->backward_needs_output() &&
          values_[source].shape == v.shape && values_[source].layout == v.layout) {
        v.in_place_of = source;
        v.data = values_[source].data;
        continue;
      }
    }
    storage_.push_back(Tensor::empty(v.shape, allocator, DType::f32, v.layout));
    v.data = storage_.back();
    activation_bytes_ += v.shape.numel() * 4;
  }
  for (Value& v : values_)
    if (v.view_of >= 0) v.data = values_[v.view_of].data.reshape(v.shape);

  plan_gradients();

  for (Node& node : nodes_) {
    node.op->bind(store_);
    node.input_tensors.clear();
    node.input_grads.clear();
    for (ValueId in : node.inputs) {
      node.input_tensors.push_back(values_[in].data);
      node.input_grads.push_back(values_[in].grad);  // undefined for the net input
    }
    node.grad_modes.assign(node.inputs.size(), GradMode::overwrite);
  }
  // Fan-out: the first consumer in backward order overwrites, later ones accumulate.
  std::vector<bool> written(values_.size(), false);
  for (int i = static_cast<int>(nodes_.size()) - 1; i >= 0; --i) {
    Node& node = nodes_[i];
    for (std::size_t k = 0; k < node.inputs.size(); ++k) {
      const ValueId r = root(node.inputs[k]);
      node.grad_modes[k] = written[r] ? GradMode::accumulate : GradMode::overwrite;
      written[r] = true;
    }
  }
  planned_ = true;
}

void Net::plan_gradients() {
  // Simulate backward: a root value's gradient is live from its first write
  // (the backward of its last consumer) to the backward of its producer.
  struct Block {
    int64_t elements;
    bool in_use;
  };
  std::vector<Block> blocks;
  std::vector<int> block_of(values_.size(), -1);
  auto take = [&](ValueId r) {
    const int64_t need = values_[r].shape.numel();
    int best = -1;
    for (int b = 0; b < static_cast<int>(blocks.size()); ++b)
      if (!blocks[b].in_use && blocks[b].elements >= need &&
          (best < 0 || blocks[b].elements < blocks[best].elements))
        best = b;
    if (best < 0) {
      blocks.push_back({need, false});
      best = static_cast<int>(blocks.size()) - 1;
    }
    blocks[best].in_use = true;
    block_of[r] = best;
  };
  const ValueId out_root = root(output_);
  take(out_root);
  for (int i = static_cast<int>(nodes_.size()) - 1; i >= 0; --i) {
    for (ValueId in : nodes_[i].inputs) {
      const ValueId r = root(in);
      if ((r != input_ || compute_input_grad_) && block_of[r] < 0) take(r);
    }
    const ValueId produced = nodes_[i].output;  // op outputs are roots
    if (block_of[produced] >= 0) blocks[block_of[produced]].in_use = false;
  }
  std::vector<Tensor> block_tensors;
  for (const Block& b : blocks) {
    storage_.push_back(Tensor::empty(Shape{b.elements}, context_.allocator()));
    block_tensors.push_back(storage_.back());
    gradient_bytes_ += b.elements * 4;
  }
  for (ValueId id = 0; id < static_cast<ValueId>(values_.size()); ++id) {
    if (block_of[id] < 0) continue;
    values_[id].grad =
        Tensor::wrap(block_tensors[block_of[id]].raw_data(), values_[id].shape, values_[id].layout);
  }
  for (Value& v : values_)
    if (v.view_of >= 0 && values_[v.view_of].grad.defined())
      v.grad = values_[v.view_of].grad.reshape(v.shape);
}

const Tensor& Net::input() const { return values_.at(input_).data; }
const Tensor& Net::output() const { return values_.at(output_).data; }
const Tensor& Net::output_grad() const { return values_.at(output_).grad; }
const Tensor& Net::input_grad() const {
  CONVNET_CHECK(compute_input_grad_, "the net was planned without an input gradient");
  return values_.at(input_).grad;
}

void Net::forward(Mode mode) {
  CONVNET_CHECK(planned_, "Net::forward before plan()");
  for (Node& node : nodes_) node.op->forward(mode, node.input_tensors, values_[node.output].data);
}

void Net::backward() {
  CONVNET_CHECK(planned_, "Net::backward before plan()");
  for (auto it = nodes_.rbegin(); it != nodes_.rend(); ++it) {
    Node& node = *it;
    const Value& out = values_[node.output];
    node.op->backward(node.input_tensors, out.data, out.grad, node.input_grads, node.grad_modes);
  }
}

}  // namespace convnet
