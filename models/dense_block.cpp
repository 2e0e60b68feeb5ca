#include "models/dense_block.h"

#include "layers/batch_norm.h"
#include "layers/conv2d.h"
#include "layers/relu.h"

namespace convnet {
namespace {

// The start of `buffer` viewed as a dense `shape` in the buffer's layout.
Tensor prefix_view(const Tensor& buffer, const Shape& shape) {
  return Tensor::wrap(buffer.raw_data(), shape, buffer.layout(), buffer.device(), buffer.dtype());
}

struct DenseLayer {
  int64_t in_channels;  // C0 + j*k
  std::unique_ptr<BatchNorm2d> norm1, norm2;
  std::unique_ptr<Relu> relu1, relu2;    // null when the BNs fuse their ReLU
  std::unique_ptr<Conv2d> conv1, conv2;  // conv2 null without a bottleneck
  BatchNormEntries norm1_params, norm2_params;
  int conv1_id = -1, conv2_id = -1;
};

class DenseBlockOp final : public Op {
 public:
  DenseBlockOp(Context& context, ParamStore& store, const std::string& name, const Shape& input,
               Layout layout, int layers, int64_t growth, int64_t bn_size, double bn_momentum)
      : context_(context),
        input_shape_(input),
        layout_(layout),
        growth_(growth),
        bn_size_(bn_size) {
    const int64_t n = input[0], c0 = input[1], h = input[2], w = input[3];
    const int64_t width = bn_size * growth;
    // Blocked (CPU) the BNs apply the ReLU themselves (oneDNN's fused
    // BN+ReLU, whose blocked kernel keeps one bit per element per BN for its
    // backward); plain nchw (where oneDNN's mask may take a byte per element)
    // and the GPU keep separate ReLU layers, so that nothing per layer grows
    // the memory.
    const bool fuse_relu = is_blocked(layout);
    for (int j = 0; j < layers; ++j) {
      DenseLayer l;
      const std::string p = name + ".denselayer" + std::to_string(j + 1);
      l.in_channels = c0 + j * growth;
      const Shape in{n, l.in_channels, h, w};
      l.norm1 = BatchNorm2d::create(context, p + ".norm1",
                                    {.channels = l.in_channels,
                                     .momentum = bn_momentum,
                                     .layout = layout,
                                     .fuse_relu = fuse_relu,
                                     .running_stats = RunningStats::per_step},
                                    in);
      l.norm1_params = store.add_batch_norm(p + ".norm1", l.in_channels);
      if (!fuse_relu) l.relu1 = Relu::create(context, p + ".relu1", in, layout);
      if (bn_size > 0) {
        l.conv1 = Conv2d::create(context, p + ".conv1",
                                 {.in_channels = l.in_channels,
                                  .out_channels = width,
                                  .input_layout = layout,
                                  .output_layout = layout},
                                 in);
        l.conv1_id =
            store.add_parameter(p + ".conv1.weight", l.conv1->weight_shape(), ParamRole::weight);
        const Shape mid{n, width, h, w};
        l.norm2 = BatchNorm2d::create(context, p + ".norm2",
                                      {.channels = width,
                                       .momentum = bn_momentum,
                                       .layout = layout,
                                       .fuse_relu = fuse_relu,
                                       .running_stats = RunningStats::per_step},
                                      mid);
        l.norm2_params = store.add_batch_norm(p + ".norm2", width);
        if (!fuse_relu) l.relu2 = Relu::create(context, p + ".relu2", mid, layout);
        l.conv2 = Conv2d::create(context, p + ".conv2", spatial_conv(width, growth, layout), mid);
        l.conv2_id =
            store.add_parameter(p + ".conv2.weight", l.conv2->weight_shape(), ParamRole::weight);
      } else {
        l.conv1 =
            Conv2d::create(context, p + ".conv1", spatial_conv(l.in_channels, growth, layout), in);
        l.conv1_id =
            store.add_parameter(p + ".conv1.weight", l.conv1->weight_shape(), ParamRole::weight);
      }
      layers_.push_back(std::move(l));
    }
    output_shape_ = Shape{n, c0 + layers * growth, h, w};
  }

  const Shape& output_shape() const { return output_shape_; }
  // A layer's 3x3 convolution (padding 1) from `in` to `out` channels.
  static Conv2dOptions spatial_conv(int64_t in, int64_t out, Layout layout) {
    return {.in_channels = in,
            .out_channels = out,
            .kernel = 3,
            .padding = 1,
            .input_layout = layout,
            .output_layout = layout};
  }
  // Backward recomputes from the block output; the input was copied into it.
  bool backward_needs_output() const override { return true; }
  bool backward_needs_input(int) const override { return false; }

  void bind(ParamStore& store) override { store_ = &store; }

  // Carves the block's temporaries out of the context's dense-block scratch,
  // which every dense block of the net shares (its size is the largest
  // block's, not their sum). Called at the start of forward and backward.
  void map_scratch() {
    const int64_t n = input_shape_[0], h = input_shape_[2], w = input_shape_[3];
    const Shape wide{n, layers_.back().in_channels, h, w};
    const Shape new_features{n, growth_, h, w};
    const Shape mid{n, std::max<int64_t>(bn_size_ * growth_, 1), h, w};
    const Shape* shapes[] = {&wide, &wide, &wide, &new_features, &new_features, &mid, &mid, &mid};
    const DType dtype = context_.activation_dtype();  // bf16 / f16 under mixed precision
    const int64_t size = static_cast<int64_t>(dtype_size(dtype));
    // Each buffer starts 256-byte aligned (cuDNN's vectorized kernels).
    const auto bytes = [&](const Shape* s) {
      return (storage_numel(*s, layout_) * size + 255) / 256 * 256;
    };
    int64_t total = 0;
    for (const Shape* s : shapes) total += bytes(s);
    char* base =
        static_cast<char*>(context_.scratch(Scratch::dense_block, static_cast<std::size_t>(total)));
    Tensor* targets[] = {&concat_,    &activation_, &dactivation_,    &features_,
                         &dfeatures_, &bottleneck_, &bottleneck_act_, &dmid_};
    for (int k = 0; k < 8; ++k) {
      *targets[k] = Tensor::wrap(base, *shapes[k], layout_, context_.allocator().device(), dtype);
      base += bytes(shapes[k]);
    }
  }

  // relu(norm2(conv1(act))) into bottleneck_ and bottleneck_act_; norm2 runs
  // in `mode` in forward and from its saved statistics when recomputing.
  void bottleneck_forward(DenseLayer& l, const Tensor& act, Mode mode, bool recompute) {
    l.conv1->forward(act, param(l.conv1_id), Tensor(), bottleneck_);
    if (recompute) {
      l.norm2->recompute(bottleneck_, param(l.norm2_params.weight), param(l.norm2_params.bias),
                         bottleneck_act_);
    } else {
      model_batch_norm_forward(*l.norm2, *store_, l.norm2_params, mode, bottleneck_,
                               bottleneck_act_);
    }
    if (l.relu2) l.relu2->forward(bottleneck_act_, bottleneck_act_);
  }

  void forward(Mode mode, const std::vector<Tensor>& in, const Tensor& out) override {
    map_scratch();
    write_channels(out, 0, in[0], 0, input_shape_[1], GradMode::overwrite);  // a copy
    for (DenseLayer& l : layers_) {
      const Shape in_shape{input_shape_[0], l.in_channels, input_shape_[2], input_shape_[3]};
      const Tensor cat = prefix_view(concat_, in_shape), act = prefix_view(activation_, in_shape);
      write_channels(cat, 0, out, 0, l.in_channels, GradMode::overwrite);
      model_batch_norm_forward(*l.norm1, *store_, l.norm1_params, mode, cat, act);
      if (l.relu1) l.relu1->forward(act, act);
      if (bn_size_ > 0) {
        bottleneck_forward(l, act, mode, /*recompute=*/false);
        l.conv2->forward(bottleneck_act_, param(l.conv2_id), Tensor(), features_);
      } else {
        l.conv1->forward(act, param(l.conv1_id), Tensor(), features_);
      }
      write_channels(out, l.in_channels, features_, 0, growth_, GradMode::overwrite);
    }
  }

  void update_running_statistics(int64_t micro_batches) override {
    for (DenseLayer& l : layers_) {
      model_batch_norm_step(*l.norm1, *store_, l.norm1_params, micro_batches);
      if (l.norm2) model_batch_norm_step(*l.norm2, *store_, l.norm2_params, micro_batches);
    }
  }

  // doutput is used as the running gradient of the whole block buffer: the
  // net releases it after this op, so it may be modified in place.
  void backward(const std::vector<Tensor>&, const Tensor& out, const Tensor& dout,
                const std::vector<Tensor>& din, const std::vector<GradMode>& modes) override {
    map_scratch();
    for (auto it = layers_.rbegin(); it != layers_.rend(); ++it) {
      DenseLayer& l = *it;
      const Shape in_shape{input_shape_[0], l.in_channels, input_shape_[2], input_shape_[3]};
      const Tensor cat = prefix_view(concat_, in_shape), act = prefix_view(activation_, in_shape);
      const Tensor dact = prefix_view(dactivation_, in_shape);
      write_channels(dfeatures_, 0, dout, l.in_channels, growth_, GradMode::overwrite);
      // Recompute the concatenated input and its BN-ReLU from the kept features.
      write_channels(cat, 0, out, 0, l.in_channels, GradMode::overwrite);
      l.norm1->recompute(cat, param(l.norm1_params.weight), param(l.norm1_params.bias), act);
      if (l.relu1) l.relu1->forward(act, act);
      if (bn_size_ > 0) {
        bottleneck_forward(l, act, Mode::training, /*recompute=*/true);
        l.conv2->backward(bottleneck_act_, param(l.conv2_id), dfeatures_, dmid_,
                          GradMode::overwrite, grad(l.conv2_id), Tensor());
        if (l.relu2) l.relu2->backward(bottleneck_act_, dmid_, dmid_, GradMode::overwrite);
        // BN backward out of place (cuDNN does not promise dx == dy), into
        // bottleneck_act_, which nothing reads any more.
        l.norm2->backward(bottleneck_, param(l.norm2_params.weight), dmid_, bottleneck_act_,
                          GradMode::overwrite, grad(l.norm2_params.weight),
                          grad(l.norm2_params.bias));
        l.conv1->backward(act, param(l.conv1_id), bottleneck_act_, dact, GradMode::overwrite,
                          grad(l.conv1_id), Tensor());
      } else {
        l.conv1->backward(act, param(l.conv1_id), dfeatures_, dact, GradMode::overwrite,
                          grad(l.conv1_id), Tensor());
      }
      // ReLU backward (unless fused into the BN's) runs in place on dact; BN
      // backward writes into act, free once conv1's backward and the ReLU have
      // read it, which saves a fourth block-wide buffer.
      if (l.relu1) l.relu1->backward(act, dact, dact, GradMode::overwrite);
      l.norm1->backward(cat, param(l.norm1_params.weight), dact, act, GradMode::overwrite,
                        grad(l.norm1_params.weight), grad(l.norm1_params.bias));
      write_channels(dout, 0, act, 0, l.in_channels, GradMode::accumulate);
    }
    if (din[0].defined()) write_channels(din[0], 0, dout, 0, input_shape_[1], modes[0]);
  }

 private:
  Tensor param(int id) const { return store_->param(id); }
  Tensor grad(int id) const { return store_->grad(id); }

  Context& context_;
  ParamStore* store_ = nullptr;
  Shape input_shape_, output_shape_;  // (N, C0, H, W), (N, C0 + L*k, H, W)
  Layout layout_;                     // of the block's input, output and temporaries
  int64_t growth_, bn_size_;
  std::vector<DenseLayer> layers_;
  Tensor concat_, activation_, dactivation_;  // shared, (N, C_widest, H, W)
  Tensor features_, dfeatures_;               // (N, k, H, W)
  Tensor bottleneck_, bottleneck_act_;        // (N, bn_size*k, H, W) conv1 output, its BN-ReLU
  Tensor dmid_;                               // (N, bn_size*k, H, W)
};

}  // namespace

ValueId add_dense_block(NetBuilder& builder, ValueId x, const std::string& name, int layers,
                        int64_t growth_rate, int64_t bn_size) {
  const Layout layout = builder.layout(x);
  CONVNET_CHECK(layout != Layout::nhwc || builder.context().backend() == Backend::cpu,
                "dense block ", name, ": nhwc on the GPU is not supported (DenseNets run nchw)");
  auto op =
      std::make_unique<DenseBlockOp>(builder.context(), builder.store(), name, builder.shape(x),
                                     layout, layers, growth_rate, bn_size, builder.bn_momentum());
  const Shape out = op->output_shape();
  return builder.net().add_op(std::move(op), {x}, out, layout);
}

}  // namespace convnet
