#include "models/builder.h"

#include "layers/add.h"
#include "layers/batch_norm.h"
#include "layers/channel_gate.h"
#include "layers/concat.h"
#include "layers/global_avg_pool.h"
#include "layers/pad_shortcut.h"
#include "layers/relu.h"
#include "models/drop_path.h"

namespace convnet {
namespace {

class ConvOp final : public Op {
 public:
  ConvOp(std::unique_ptr<Conv2d> conv, int weight, int bias)
      : conv_(std::move(conv)), weight_id_(weight), bias_id_(bias) {}
  void bind(ParamStore& s) override {
    weight_ = s.param(weight_id_);
    dweight_ = s.grad(weight_id_);
    if (bias_id_ >= 0) {
      bias_ = s.param(bias_id_);
      dbias_ = s.grad(bias_id_);
    }
  }
  void forward(Mode, const std::vector<Tensor>& in, const Tensor& out) override {
    conv_->forward(in[0], weight_, bias_, out);
  }
  void backward(const std::vector<Tensor>& in, const Tensor&, const Tensor& dout,
                const std::vector<Tensor>& din, const std::vector<GradMode>& modes) override {
    conv_->backward(in[0], weight_, dout, din[0], modes[0], dweight_, dbias_);
  }

 private:
  std::unique_ptr<Conv2d> conv_;
  int weight_id_, bias_id_;
  Tensor weight_, dweight_, bias_, dbias_;
};

class BatchNormOp final : public Op {
 public:
  BatchNormOp(std::unique_ptr<BatchNorm2d> bn, const BatchNormEntries& entries)
      : bn_(std::move(bn)), entries_(entries) {}
  void bind(ParamStore& s) override {
    store_ = &s;
    weight_ = s.param(entries_.weight);
    dweight_ = s.grad(entries_.weight);
    dbias_ = s.grad(entries_.bias);
  }
  void forward(Mode mode, const std::vector<Tensor>& in, const Tensor& out) override {
    model_batch_norm_forward(*bn_, *store_, entries_, mode, in[0], out);
  }
  void update_running_statistics(int64_t micro_batches) override {
    model_batch_norm_step(*bn_, *store_, entries_, micro_batches);
  }
  void backward(const std::vector<Tensor>& in, const Tensor&, const Tensor& dout,
                const std::vector<Tensor>& din, const std::vector<GradMode>& modes) override {
    bn_->backward(in[0], weight_, dout, din[0], modes[0], dweight_, dbias_);
  }

 private:
  std::unique_ptr<BatchNorm2d> bn_;
  BatchNormEntries entries_;
  ParamStore* store_ = nullptr;
  Tensor weight_, dweight_, dbias_;  // for backward
};

class ReluOp final : public Op {
 public:
  explicit ReluOp(std::unique_ptr<Relu> relu) : relu_(std::move(relu)) {}
  bool can_run_in_place() const override { return true; }
  bool backward_needs_output() const override { return true; }
  bool backward_needs_input(int) const override { return false; }
  void forward(Mode, const std::vector<Tensor>& in, const Tensor& out) override {
    relu_->forward(in[0], out);
  }
  void backward(const std::vector<Tensor>&, const Tensor& out, const Tensor& dout,
                const std::vector<Tensor>& din, const std::vector<GradMode>& modes) override {
    relu_->backward(out, dout, din[0], modes[0]);
  }

 private:
  std::unique_ptr<Relu> relu_;
};

class MaxPoolOp final : public Op {
 public:
  bool backward_needs_input(int) const override { return false; }
  explicit MaxPoolOp(std::unique_ptr<MaxPool2d> pool) : pool_(std::move(pool)) {}
  // Always records the argmax (same output in both modes), so that a net run
  // in inference mode can still be differentiated (eval-mode gradients).
  void forward(Mode, const std::vector<Tensor>& in, const Tensor& out) override {
    pool_->forward(Mode::training, in[0], out);
  }
  void backward(const std::vector<Tensor>&, const Tensor&, const Tensor& dout,
                const std::vector<Tensor>& din, const std::vector<GradMode>& modes) override {
    pool_->backward(dout, din[0], modes[0]);
  }

 private:
  std::unique_ptr<MaxPool2d> pool_;
};

// Ops whose layer has forward(x, y) and backward(dy, dx, mode).
template <typename Layer>
class SimpleOp final : public Op {
 public:
  bool backward_needs_input(int) const override { return false; }
  explicit SimpleOp(std::unique_ptr<Layer> layer) : layer_(std::move(layer)) {}
  void forward(Mode, const std::vector<Tensor>& in, const Tensor& out) override {
    layer_->forward(in[0], out);
  }
  void backward(const std::vector<Tensor>&, const Tensor&, const Tensor& dout,
                const std::vector<Tensor>& din, const std::vector<GradMode>& modes) override {
    layer_->backward(dout, din[0], modes[0]);
  }

 private:
  std::unique_ptr<Layer> layer_;
};

class LinearOp final : public Op {
 public:
  LinearOp(std::unique_ptr<Linear> linear, int weight, int bias)
      : linear_(std::move(linear)), weight_id_(weight), bias_id_(bias) {}
  void bind(ParamStore& s) override {
    weight_ = s.param(weight_id_);
    dweight_ = s.grad(weight_id_);
    bias_ = s.param(bias_id_);
    dbias_ = s.grad(bias_id_);
  }
  void forward(Mode, const std::vector<Tensor>& in, const Tensor& out) override {
    linear_->forward(in[0], weight_, bias_, out);
  }
  void backward(const std::vector<Tensor>& in, const Tensor&, const Tensor& dout,
                const std::vector<Tensor>& din, const std::vector<GradMode>& modes) override {
    linear_->backward(in[0], weight_, dout, din[0], modes[0], dweight_, dbias_);
  }

 private:
  std::unique_ptr<Linear> linear_;
  int weight_id_, bias_id_;
  Tensor weight_, dweight_, bias_, dbias_;
};

class AddOp final : public Op {
 public:
  bool backward_needs_input(int) const override { return false; }
  explicit AddOp(std::unique_ptr<Add> add) : add_(std::move(add)) {}
  void forward(Mode, const std::vector<Tensor>& in, const Tensor& out) override {
    add_->forward(in[0], in[1], out);
  }
  void backward(const std::vector<Tensor>&, const Tensor&, const Tensor& dout,
                const std::vector<Tensor>& din, const std::vector<GradMode>& modes) override {
    add_->backward(dout, din[0], modes[0], din[1], modes[1]);
  }

 private:
  std::unique_ptr<Add> add_;
};

class GateOp final : public Op {
 public:
  explicit GateOp(std::unique_ptr<ChannelGate> gate) : gate_(std::move(gate)) {}
  void forward(Mode, const std::vector<Tensor>& in, const Tensor& out) override {
    gate_->forward(in[0], in[1], out);
  }
  void backward(const std::vector<Tensor>& in, const Tensor&, const Tensor& dout,
                const std::vector<Tensor>& din, const std::vector<GradMode>& modes) override {
    gate_->backward(in[0], in[1], dout, din[0], modes[0], din[1], modes[1]);
  }

 private:
  std::unique_ptr<ChannelGate> gate_;
};

class ConcatOp final : public Op {
 public:
  bool backward_needs_input(int) const override { return false; }
  explicit ConcatOp(std::unique_ptr<Concat> concat) : concat_(std::move(concat)) {}
  void forward(Mode, const std::vector<Tensor>& in, const Tensor& out) override {
    concat_->forward(in, out);
  }
  void backward(const std::vector<Tensor>&, const Tensor&, const Tensor& dout,
                const std::vector<Tensor>& din, const std::vector<GradMode>& modes) override {
    concat_->backward(dout, din, modes);
  }

 private:
  std::unique_ptr<Concat> concat_;
};

// The option A shortcut (layers/pad_shortcut.h) as an op.
class PadShortcutOp final : public Op {
 public:
  explicit PadShortcutOp(std::unique_ptr<PadShortcut> pad) : pad_(std::move(pad)) {}
  bool backward_needs_input(int) const override { return false; }
  void forward(Mode, const std::vector<Tensor>& in, const Tensor& out) override {
    pad_->forward(in[0], out);
  }
  void backward(const std::vector<Tensor>&, const Tensor&, const Tensor& dout,
                const std::vector<Tensor>& din, const std::vector<GradMode>& modes) override {
    if (din[0].defined()) pad_->backward(dout, din[0], modes[0]);
  }

 private:
  std::unique_ptr<PadShortcut> pad_;
};

}  // namespace

void model_batch_norm_forward(BatchNorm2d& bn, ParamStore& store, const BatchNormEntries& entries,
                              Mode mode, const Tensor& x, const Tensor& y) {
  bn.forward(mode, x, store.param(entries.weight), store.param(entries.bias),
             store.buffer(entries.running_mean), store.buffer(entries.running_var), y);
  if (mode == Mode::training) bn.add_batch_statistics(store.batch_stat_sums(entries));
}

void model_batch_norm_step(BatchNorm2d& bn, ParamStore& store, const BatchNormEntries& entries,
                           int64_t micro_batches) {
  bn.update_running_statistics(store.batch_stat_sums(entries), micro_batches,
                               store.buffer(entries.running_mean),
                               store.buffer(entries.running_var));
  ++store.counter(entries.batches);
}

namespace {
void require_plain(const NetBuilder& b, ValueId x, const std::string& name) {
  CONVNET_CHECK(b.layout(x) == Layout::nchw, "layer ", name, " needs plain nchw input");
}
}  // namespace

void NetBuilder::set_activation_layout(Layout layout) {
  CONVNET_CHECK(!is_blocked(layout) || context_.backend() == Backend::cpu, "the ",
                to_string(layout), " activation layout is the CPU backend's");
  activation_layout_ = layout;
}

ValueId NetBuilder::conv(ValueId x, const std::string& name, const Conv2dOptions& conv_options) {
  Conv2dOptions options = conv_options;
  options.input_layout = layout(x);
  // The activation layout for spatial maps; 1x1 maps (SE's squeeze) stay
  // plain, except after an input in that layout (a ResNet's last stage on a
  // small image), so that residual additions see one layout.
  const bool spatial = shape(x)[2] * shape(x)[3] > 1;
  const bool keep = layout(x) == activation_layout_ && activation_layout_ != Layout::nchw;
  options.output_layout = spatial || keep ? activation_layout_ : Layout::nchw;
  auto layer = Conv2d::create(context_, name, options, shape(x));
  const int w = store_.add_parameter(name + ".weight", layer->weight_shape(), ParamRole::weight);
  const int b = options.bias ? store_.add_parameter(name + ".bias", layer->bias_shape(),
                                                    ParamRole::bn_or_bias)
                             : -1;
  const Shape out = layer->output_shape();
  return net_.add_op(std::make_unique<ConvOp>(std::move(layer), w, b), {x}, out,
                     options.output_layout);
}

ValueId NetBuilder::batch_norm(ValueId x, const std::string& name) {
  return add_batch_norm(x, name, /*fuse_relu=*/false);
}

ValueId NetBuilder::batch_norm_relu(ValueId x, const std::string& name) {
  return add_batch_norm(x, name, /*fuse_relu=*/true);
}

ValueId NetBuilder::add_batch_norm(ValueId x, const std::string& name, bool fuse_relu) {
  auto layer = BatchNorm2d::create(context_, name,
                                   {.channels = channels(x),
                                    .momentum = bn_momentum_,
                                    .layout = layout(x),
                                    .fuse_relu = fuse_relu,
                                    .running_stats = RunningStats::per_step},
                                   shape(x));
  const BatchNormEntries entries = store_.add_batch_norm(name, channels(x));
  const Shape out = layer->output_shape();
  return net_.add_op(std::make_unique<BatchNormOp>(std::move(layer), entries), {x}, out, layout(x));
}

ValueId NetBuilder::drop_path(ValueId x, const std::string& name, int64_t block, double p) {
  if (p == 0) return x;
  (void)name;  // no parameters; the op is named by its block
  return net_.add_op(std::make_unique<DropPathOp>(net_.step_state(), block, p), {x}, shape(x),
                     layout(x));
}

ValueId NetBuilder::relu(ValueId x, const std::string& name) {
  return net_.add_op(std::make_unique<ReluOp>(Relu::create(context_, name, shape(x), layout(x))),
                     {x}, shape(x), layout(x));
}

ValueId NetBuilder::max_pool(ValueId x, const std::string& name,
                             const MaxPool2dOptions& pool_options) {
  MaxPool2dOptions options = pool_options;
  options.layout = layout(x);
  auto layer = MaxPool2d::create(context_, name, options, shape(x));
  const Shape out = layer->output_shape();
  return net_.add_op(std::make_unique<MaxPoolOp>(std::move(layer)), {x}, out, layout(x));
}

ValueId NetBuilder::avg_pool(ValueId x, const std::string& name,
                             const AvgPool2dOptions& pool_options) {
  AvgPool2dOptions options = pool_options;
  options.layout = layout(x);
  auto layer = AvgPool2d::create(context_, name, options, shape(x));
  const Shape out = layer->output_shape();
  return net_.add_op(std::make_unique<SimpleOp<AvgPool2d>>(std::move(layer)), {x}, out, layout(x));
}

ValueId NetBuilder::global_avg_pool(ValueId x, const std::string& name) {
  auto layer = GlobalAvgPool::create(context_, name, shape(x), layout(x));
  const Shape out = layer->output_shape();
  return net_.add_op(std::make_unique<SimpleOp<GlobalAvgPool>>(std::move(layer)), {x}, out);
}

ValueId NetBuilder::linear(ValueId x, const std::string& name, int64_t out_features) {
  const LinearOptions options{.in_features = shape(x)[1], .out_features = out_features};
  auto layer = Linear::create(context_, name, options, shape(x));
  const int w = store_.add_parameter(name + ".weight", layer->weight_shape(), ParamRole::weight);
  const int b = store_.add_parameter(name + ".bias", layer->bias_shape(), ParamRole::bn_or_bias);
  const Shape out = layer->output_shape();
  return net_.add_op(std::make_unique<LinearOp>(std::move(layer), w, b), {x}, out);
}

ValueId NetBuilder::add(ValueId a, ValueId b, const std::string& name) {
  CONVNET_CHECK(layout(a) == layout(b), "layer ", name, ": inputs of different layouts");
  auto layer = Add::create(context_, name, shape(a), shape(b), layout(a));
  return net_.add_op(std::make_unique<AddOp>(std::move(layer)), {a, b}, shape(a), layout(a));
}

ValueId NetBuilder::concat(const std::vector<ValueId>& inputs, const std::string& name) {
  std::vector<Shape> shapes;
  const Layout blocked = layout(inputs.front());
  bool whole_blocks = is_blocked(blocked);
  for (ValueId v : inputs) {
    whole_blocks =
        whole_blocks && layout(v) == blocked && channels(v) % channel_block(blocked) == 0;
    shapes.push_back(shape(v));
  }
  if (!whole_blocks)
    for (ValueId v : inputs) require_plain(*this, v, name);
  const Layout out_layout = whole_blocks ? blocked : Layout::nchw;
  auto layer = Concat::create(context_, name, {.layout = out_layout}, shapes);
  const Shape out = layer->output_shape();
  return net_.add_op(std::make_unique<ConcatOp>(std::move(layer)), inputs, out, out_layout);
}

ValueId NetBuilder::squeeze_excitation(ValueId x, const std::string& name, int64_t reduction) {
  return squeeze_excitation(x, name, reduction, name + ".fc1", name + ".fc2");
}

ValueId NetBuilder::squeeze_excitation(ValueId x, const std::string& name, int64_t reduction,
                                       const std::string& down, const std::string& up) {
  const int64_t c = channels(x), n = shape(x)[0];
  const int64_t hidden = c / reduction;
  CONVNET_CHECK(hidden > 0, "layer ", name, ": ", c, " channels with SE reduction ", reduction);
  ValueId s = global_avg_pool(x, name + ".pool");
  s = net_.add_reshape(s, Shape{n, c, 1, 1});
  s = conv(s, down, {.in_channels = c, .out_channels = hidden, .bias = true});
  s = relu(s, name + ".relu");
  s = conv(s, up, {.in_channels = hidden, .out_channels = c, .bias = true});
  s = net_.add_reshape(s, Shape{n, c});
  auto layer = ChannelGate::create(context_, name + ".gate", shape(x), Shape{n, c}, layout(x));
  return net_.add_op(std::make_unique<GateOp>(std::move(layer)), {x, s}, shape(x), layout(x));
}

ValueId NetBuilder::pad_shortcut(ValueId x, const std::string& name, int64_t out_channels,
                                 int64_t stride) {
  const Shape& in = shape(x);
  CONVNET_CHECK(out_channels >= in[1] && (out_channels - in[1]) % 2 == 0 && stride >= 1, "layer ",
                name, ": cannot pad ", in, " to ", out_channels, " channels");
  const Shape out{in[0], out_channels, (in[2] - 1) / stride + 1, (in[3] - 1) / stride + 1};
  auto pad = PadShortcut::create(context_, name, in, out, stride, layout(x));
  return net_.add_op(std::make_unique<PadShortcutOp>(std::move(pad)), {x}, out, layout(x));
}

}  // namespace convnet
