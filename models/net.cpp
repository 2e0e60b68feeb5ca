#include "models/net.h"

#include <algorithm>

#include "core/error.h"

namespace convnet {
namespace {

// Converts a value to another element type (under mixed precision: the f32
// net input to the activation type, the logits back to f32); backward
// converts the gradient back.
class CastOp final : public Op {
 public:
  bool backward_needs_input(int) const override { return false; }
  void forward(Mode, const std::vector<Tensor>& in, const Tensor& out) override {
    write_gradient(out, in[0], GradMode::overwrite);
  }
  void backward(const std::vector<Tensor>&, const Tensor&, const Tensor& dout,
                const std::vector<Tensor>& din, const std::vector<GradMode>& modes) override {
    if (din[0].defined()) write_gradient(din[0], dout, modes[0]);
  }
};

int64_t bytes_of(const Shape& shape, DType dtype, Layout layout) {
  return storage_numel(shape, layout) * static_cast<int64_t>(dtype_size(dtype));
}

}  // namespace

Net::Net(Context& context, ParamStore& store) : context_(context), store_(store) {}

ValueId Net::add_input(const Shape& shape, Layout layout) {
  CONVNET_CHECK(input_ < 0, "a net has one input");
  CONVNET_CHECK(shape.rank() == 4 && shape.all_positive(), "net input shape ", shape,
                " must be (N, C, H, W) with every extent > 0");
  Value v;
  v.shape = shape;
  v.layout = layout;
  values_.push_back(std::move(v));
  input_ = static_cast<ValueId>(values_.size() - 1);
  if (context_.activation_dtype() == DType::f32) return input_;
  input_cast_ = add_cast(input_, context_.activation_dtype());
  return input_cast_;
}

ValueId Net::add_cast(ValueId value, DType dtype) {
  const ValueId out = add_op(std::make_unique<CastOp>(), {value}, values_.at(value).shape,
                             values_.at(value).layout);
  values_[out].dtype = dtype;
  return out;
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
  Value produced;
  produced.shape = output_shape;
  produced.layout = output_layout;
  produced.dtype = context_.activation_dtype();
  produced.producer = index;
  values_.push_back(std::move(produced));
  const ValueId out = static_cast<ValueId>(values_.size() - 1);
  Node node;
  node.op = std::move(op);
  node.inputs = std::move(inputs);
  node.output = out;
  node.entries_end = store_.registered();
  nodes_.push_back(std::move(node));
  return out;
}

ValueId Net::add_reshape(ValueId value, const Shape& shape) {
  CONVNET_CHECK(values_.at(value).shape.numel() == shape.numel(), "cannot reshape ",
                values_.at(value).shape, " to ", shape);
  CONVNET_CHECK(values_.at(value).layout == Layout::nchw, "cannot reshape a blocked value");
  Value v;
  v.shape = shape;
  v.dtype = values_.at(value).dtype;
  v.view_of = root(value);
  values_.push_back(std::move(v));
  return static_cast<ValueId>(values_.size() - 1);
}

void Net::set_output(ValueId value) {
  output_ = values_.at(value).dtype == DType::f32 ? value : add_cast(value, DType::f32);
}

ValueId Net::root(ValueId value) const {
  while (values_[value].view_of >= 0) value = values_[value].view_of;
  return value;
}

ValueId Net::storage_root(ValueId value) const {
  value = root(value);
  while (values_[value].in_place_of >= 0) value = root(values_[value].in_place_of);
  return value;
}

// Blocks of memory handed to values while they are alive (best fit by size).
struct Net::Pool {
  struct Block {
    int64_t bytes;
    bool in_use;
  };
  std::vector<Block> blocks;
  int take(int64_t bytes) {
    int best = -1;
    for (int b = 0; b < static_cast<int>(blocks.size()); ++b)
      if (!blocks[b].in_use && blocks[b].bytes >= bytes &&
          (best < 0 || blocks[b].bytes < blocks[best].bytes))
        best = b;
    if (best < 0) {
      blocks.push_back({bytes, false});
      best = static_cast<int>(blocks.size()) - 1;
    }
    blocks[best].in_use = true;
    return best;
  }
  void release(int block) { blocks[block].in_use = false; }
};

void Net::plan() {
  CONVNET_CHECK(!planned_, "Net::plan() called twice");
  CONVNET_CHECK(input_ >= 0 && output_ >= 0, "net without input or output");
  if (!store_.finalized()) {
    if (context_.backend() == Backend::cuda)
      store_.set_alignment(64);  // 256-byte weights for cuDNN
    store_.finalize(context_.allocator());
  }
  plan_gradient_readiness();

  Pool pool;
  plan_activations(pool);
  plan_gradients(pool);
  std::vector<Tensor> blocks;  // pool blocks are counted in bytes, allocated as floats
  for (const Pool::Block& b : pool.blocks) {
    storage_.push_back(Tensor::empty(Shape{(b.bytes + 3) / 4}, context_.allocator()));
    blocks.push_back(storage_.back());
    pool_bytes_ += b.bytes;
  }
  const Device device = context_.allocator().device();
  for (Value& v : values_) {
    if (v.data_block >= 0)
      v.data = Tensor::wrap(blocks[v.data_block].raw_data(), v.shape, v.layout, device, v.dtype);
    if (v.grad_block >= 0)
      v.grad = Tensor::wrap(blocks[v.grad_block].raw_data(), v.shape, v.layout, device, v.dtype);
  }
  // In-place results share their source's memory; views reshape their source.
  for (Value& v : values_)
    if (v.in_place_of >= 0) v.data = values_[v.in_place_of].data;
  for (Value& v : values_) {
    if (v.view_of < 0) continue;
    v.data = values_[v.view_of].data.reshape(v.shape);
    if (values_[v.view_of].grad.defined()) v.grad = values_[v.view_of].grad.reshape(v.shape);
  }

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

void Net::plan_activations(Pool& pool) {
  // In place: an op like ReLU writes into its input when nothing else reads it.
  for (Value& v : values_) {
    if (v.view_of >= 0 || v.producer < 0) continue;
    const Node& node = nodes_[v.producer];
    const ValueId source = node.inputs.empty() ? -1 : node.inputs[0];
    if (source >= 0 && node.op->can_run_in_place() && source == root(source) && source != input_ &&
        values_[source].consumers.size() == 1 &&
        !nodes_[values_[source].producer].op->backward_needs_output() &&
        values_[source].shape == v.shape && values_[source].layout == v.layout &&
        values_[source].dtype == v.dtype)
      v.in_place_of = source;
  }
  // Storage that backward reads is kept for the whole step; the rest is transient.
  std::vector<bool> kept(values_.size(), false);
  kept[storage_root(input_)] = kept[storage_root(output_)] = true;
  std::vector<int> last_use(values_.size(), -1);
  for (int i = 0; i < static_cast<int>(nodes_.size()); ++i) {
    const Node& node = nodes_[i];
    for (std::size_t k = 0; k < node.inputs.size(); ++k) {
      const ValueId s = storage_root(node.inputs[k]);
      last_use[s] = i;
      if (node.op->backward_needs_input(static_cast<int>(k))) kept[s] = true;
    }
    const ValueId out = storage_root(node.output);
    last_use[out] = std::max(last_use[out], i);
    if (node.op->backward_needs_output()) kept[out] = true;
  }
  for (ValueId id = 0; id < static_cast<ValueId>(values_.size()); ++id) {
    Value& v = values_[id];
    if (v.view_of >= 0 || v.in_place_of >= 0 || !kept[id]) continue;
    storage_.push_back(Tensor::empty(v.shape, context_.allocator(), v.dtype, v.layout));
    v.data = storage_.back();
    activation_bytes_ += bytes_of(v.shape, v.dtype, v.layout);
  }
  // Transient storage, simulated in forward order.
  for (int i = 0; i < static_cast<int>(nodes_.size()); ++i) {
    Value& out = values_[nodes_[i].output];
    if (out.in_place_of < 0 && !kept[nodes_[i].output])
      out.data_block = pool.take(bytes_of(out.shape, out.dtype, out.layout));
    for (ValueId id : nodes_[i].inputs) {
      const ValueId s = storage_root(id);
      if (!kept[s] && last_use[s] == i && values_[s].data_block >= 0)
        pool.release(values_[s].data_block);
    }
    if (!kept[nodes_[i].output] && out.in_place_of < 0 && last_use[nodes_[i].output] == i)
      pool.release(out.data_block);  // never read
  }
}

void Net::plan_gradients(Pool& pool) {
  // After forward every transient block is free again. A root value's
  // gradient is live from its first write (the backward of its last consumer)
  // to the backward of its producer.
  auto take = [&](ValueId r) {
    values_[r].grad_block =
        pool.take(bytes_of(values_[r].shape, values_[r].dtype, values_[r].layout));
  };
  take(root(output_));
  for (int i = static_cast<int>(nodes_.size()) - 1; i >= 0; --i) {
    const ValueId produced = nodes_[i].output;  // op outputs are roots
    const ValueId source = values_[produced].in_place_of;
    if (source >= 0 && values_[source].grad_block < 0 && values_[produced].grad_block >= 0) {
      // An in-place op (ReLU) also runs its backward in place: its only input
      // is read by nothing else, so the input gradient overwrites the output's.
      values_[source].grad_block = values_[produced].grad_block;
      continue;
    }
    for (ValueId in : nodes_[i].inputs) {
      const ValueId r = root(in);
      const bool network_input = r == input_ || r == input_cast_;
      if ((!network_input || compute_input_grad_) && values_[r].grad_block < 0) take(r);
    }
    if (values_[produced].grad_block >= 0) pool.release(values_[produced].grad_block);
  }
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

void Net::plan_gradient_readiness() {
  // After the backward of node k, nodes 0..k-1 are still to run: the final
  // prefix of the flat gradients ends where the first of their parameters starts.
  const std::vector<ParamEntry>& entries = store_.entries();
  std::vector<int64_t> first_offset(nodes_.size(), store_.flat_size());
  int begin = 0;
  for (std::size_t k = 0; k < nodes_.size(); ++k) {
    for (int e = begin; e < nodes_[k].entries_end; ++e)
      if (entries[e].kind == EntryKind::parameter)
        first_offset[k] = std::min(first_offset[k], entries[e].offset);
    begin = nodes_[k].entries_end;
  }
  int64_t ready = store_.flat_size();
  for (std::size_t k = 0; k < nodes_.size(); ++k) {
    nodes_[k].grads_ready_after = ready;
    ready = std::min(ready, first_offset[k]);
  }
  // Parameters registered after the last op (none in the zoo) are final only at the end.
  for (int e = begin; e < static_cast<int>(entries.size()); ++e)
    if (entries[e].kind == EntryKind::parameter)
      for (Node& node : nodes_)
        node.grads_ready_after = std::min(node.grads_ready_after, entries[e].offset);
}

void Net::update_running_statistics(int64_t micro_batches) {
  CONVNET_CHECK(planned_, "update_running_statistics() before plan()");
  for (Node& node : nodes_) node.op->update_running_statistics(micro_batches);
  store_.zero_stat_sums();
}

void Net::backward(const std::function<void(int64_t)>& on_gradients_ready) {
  CONVNET_CHECK(planned_, "Net::backward before plan()");
  int64_t reported = 0;
  for (auto it = nodes_.rbegin(); it != nodes_.rend(); ++it) {
    Node& node = *it;
    const Value& out = values_[node.output];
    node.op->backward(node.input_tensors, out.data, out.grad, node.input_grads, node.grad_modes);
    if (on_gradients_ready && node.grads_ready_after > reported) {
      reported = node.grads_ready_after;
      on_gradients_ready(reported);
    }
  }
  if (on_gradients_ready && reported < store_.flat_size()) on_gradients_ready(store_.flat_size());
}

}  // namespace convnet
