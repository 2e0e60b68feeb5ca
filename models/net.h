// Net: a model instantiated for one input shape, as a list of ops over values.
//
// A value is an activation tensor (N, ...) with its gradient. Ops run in the
// order they were added (a topological order, as builders add them); backward
// runs them in reverse. The net plans all memory once, in plan():
//   - activations: one tensor per value that backward reads; an op that may
//     run in place (ReLU) writes into its input when that input has no other
//     consumer; reshape values are views of another value; values that no
//     backward reads (e.g. a residual branch's last BN output) live in a pool
//     only from their producer to their last consumer in forward;
//   - activation gradients: taken from the same pool while alive (from the
//     backward of a value's last consumer to that of its producer);
//   - parameters: views into the ParamStore's flat buffers.
// Element types: values are f32, except under mixed precision (a context
// whose activation_dtype() is bf16 or f16): there every op's output and
// gradient is of that type, the net converts its f32 input to it first and
// its last value back to f32 (cast ops), so callers fill and read f32
// tensors as always.
// A value consumed by several ops (a residual fan-out) receives the gradient of
// the first consumer in backward order with GradMode::overwrite and of the
// others with GradMode::accumulate. The gradient of the network input is not
// computed.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/context.h"
#include "core/tensor.h"
#include "layers/layer.h"
#include "models/param_store.h"

namespace convnet {

using ValueId = int;

// The training step a net's stochastic ops (models/drop_path.h) draw for.
struct StepState {
  uint64_t seed = 0;
  int64_t step = -1;  // < 0: none set (nothing is dropped)
};

// One step of the network. Inputs and outputs are the net's values.
class Op {
 public:
  virtual ~Op() = default;
  // Called once after the ParamStore is finalized: cache parameter views.
  virtual void bind(ParamStore& store) {}
  virtual void forward(Mode mode, const std::vector<Tensor>& inputs, const Tensor& output) = 0;
  // Writes input gradients (undefined ones are skipped) per modes; parameter
  // gradients accumulate into the ParamStore.
  virtual void backward(const std::vector<Tensor>& inputs, const Tensor& output,
                        const Tensor& doutput, const std::vector<Tensor>& dinputs,
                        const std::vector<GradMode>& modes) = 0;
  // Once per training step, after every micro-batch's forward: BatchNorm ops
  // move their running statistics from the store's (allreduced) step sums of
  // batch statistics over `micro_batches` micro-batches.
  virtual void update_running_statistics(int64_t micro_batches) {}
  // True when forward(inputs[0] == output) is correct and backward needs
  // the output but not inputs[0]'s original values (ReLU).
  virtual bool can_run_in_place() const { return false; }
  // True when backward reads this op's output; an in-place successor must not
  // overwrite it then.
  virtual bool backward_needs_output() const { return false; }
  // False when backward never reads inputs[k] (its memory may then be reused
  // once forward is past it).
  virtual bool backward_needs_input(int k) const { return true; }
};

class Net {
 public:
  Net(Context& context, ParamStore& store);

  // The network input (N, C, H, W), f32, stored in `layout` (nchw, or nhwc
  // for channels-last models). Returns the value ops should read:
  // the input itself, or under mixed precision its conversion.
  ValueId add_input(const Shape& shape, Layout layout = Layout::nchw);
  ValueId add_op(std::unique_ptr<Op> op, std::vector<ValueId> inputs, const Shape& output_shape,
                 Layout output_layout = Layout::nchw);
  // A zero-copy view of `value` with another shape of the same numel.
  ValueId add_reshape(ValueId value, const Shape& shape);
  // The value output() returns (converted to f32 under mixed precision).
  void set_output(ValueId value);
  // Also compute the gradient of the network input (off by default: training
  // never needs it). Call before plan().
  void set_compute_input_grad(bool enabled) { compute_input_grad_ = enabled; }

  const Shape& shape(ValueId value) const { return values_.at(value).shape; }
  Layout layout(ValueId value) const { return values_.at(value).layout; }

  // Allocates activations and gradients and binds parameters (finalizing the
  // store on the first build). Must be called once, before forward.
  void plan();

  const Tensor& input() const;        // (N, C, H, W), filled by the caller
  const Tensor& output() const;       // e.g. logits (N, K)
  const Tensor& output_grad() const;  // filled by the caller before backward()
  const Tensor& input_grad() const;   // only with set_compute_input_grad(true)
  void forward(Mode mode);
  // Gradients of the output_grad() projection: parameter gradients accumulate
  // into the store (zero them first with store.zero_grads()).
  //
  // on_gradients_ready(n), when given, is called during backward each time
  // the leading n elements of store.flat_grads() have become final (n grows;
  // the last call has n = store.flat_size()). Parameters registered before an
  // op was added belong to that op; the flat buffer is in reverse
  // registration order, so buckets at its front are done first and their
  // allreduce can overlap the rest of backward.
  void backward(const std::function<void(int64_t)>& on_gradients_ready = {});

  // The seed and the 0-based global step of the next training forwards
  // (stochastic depth draws from them; TrainStep sets the step).
  void set_seed(uint64_t seed) { step_state_.seed = seed; }
  void set_step(int64_t step) { step_state_.step = step; }
  const StepState& step_state() const { return step_state_; }

  // Ends a training step's BatchNorm statistics: every op's
  // update_running_statistics(micro_batches) from store().flat_stat_sums()
  // (summed over ranks by the caller first, with micro_batches counting the
  // micro-batches of all ranks), then the sums are zeroed for the next step.
  void update_running_statistics(int64_t micro_batches);

  // Bytes of kept activations, and of the pool shared by transient
  // activations (forward) and activation gradients (backward).
  int64_t activation_bytes() const { return activation_bytes_; }
  int64_t pool_bytes() const { return pool_bytes_; }
  ParamStore& store() { return store_; }

 private:
  struct Value {
    Shape shape;
    Layout layout = Layout::nchw;  // of data and grad
    DType dtype = DType::f32;      // of data and grad
    int producer = -1;             // op index, -1 for the input
    std::vector<int> consumers;    // op indices
    ValueId view_of = -1;          // reshape source
    ValueId in_place_of = -1;      // shares its storage with this value
    int data_block = -1;           // pool block of a transient activation
    int grad_block = -1;           // pool block of the gradient
    Tensor data;
    Tensor grad;
  };
  struct Node {
    std::unique_ptr<Op> op;
    std::vector<ValueId> inputs;
    ValueId output;
    std::vector<Tensor> input_tensors, input_grads;  // cached for the hot path
    std::vector<GradMode> grad_modes;
    int entries_end = 0;            // store entries registered up to this op
    int64_t grads_ready_after = 0;  // leading final gradient elements once this op's backward ran
  };

  // A cast op converting `value` to `dtype` (same shape and layout).
  ValueId add_cast(ValueId value, DType dtype);
  ValueId root(ValueId value) const;
  ValueId storage_root(ValueId value) const;  // follows views and in-place sharing
  struct Pool;
  void plan_activations(Pool& pool);
  void plan_gradients(Pool& pool);
  void plan_gradient_readiness();

  Context& context_;
  ParamStore& store_;
  std::vector<Value> values_;
  std::vector<Node> nodes_;
  ValueId input_ = -1, output_ = -1;
  ValueId input_cast_ = -1;  // the input converted (mixed precision); no gradient unless asked
  bool planned_ = false;
  StepState step_state_;
  bool compute_input_grad_ = false;
  std::vector<Tensor> storage_;  // owning allocations behind values and the gradient pool
  int64_t activation_bytes_ = 0, pool_bytes_ = 0;
};

}  // namespace convnet
