// The GPU backend's elementwise and reduction layers (ReLU, Add, ChannelGate,
// GlobalAvgPool, Concat): thin wrappers over the kernels of kernels.h.
#include "layers/add.h"
#include "layers/channel_gate.h"
#include "layers/concat.h"
#include "layers/cuda/cudnn_util.h"
#include "layers/global_avg_pool.h"
#include "layers/relu.h"

namespace convnet {
namespace {

using cuda::act;

// Elementwise layers see dense tensors of one layout: the same code for nchw and nhwc.
void require_plain(const std::string& name, Layout layout) {
  cuda::require_gpu_layout(name, layout);
}

class ReluCuda final : public Relu {
 public:
  ReluCuda(Context& context, std::string name, const Shape& shape, Layout layout)
      : Relu(std::move(name), shape, layout), stream_(cuda::stream_of(context)) {
    require_plain(this->name(), layout);
  }

 private:
  void forward_impl(const Tensor& x, const Tensor& y) override {
    cuda::relu_forward(x.dtype(), act(x), act(y), x.numel(), stream_);
  }
  void backward_impl(const Tensor& y, const Tensor& dy, const Tensor& dx,
                     GradMode dx_mode) override {
    cuda::relu_backward(y.dtype(), act(y), act(dy), act(dx), y.numel(),
                        dx_mode == GradMode::accumulate, stream_);
  }
  cudaStream_t stream_;
};

class AddCuda final : public Add {
 public:
  AddCuda(Context& context, std::string name, const Shape& a, const Shape& b, Layout layout)
      : Add(std::move(name), a, b, layout), stream_(cuda::stream_of(context)) {
    require_plain(this->name(), layout);
  }

 private:
  void forward_impl(const Tensor& a, const Tensor& b, const Tensor& y) override {
    cuda::add(y.dtype(), act(a), act(b), act(y), y.numel(), stream_);
  }
  void backward_impl(const Tensor& dy, const Tensor& da, GradMode da_mode, const Tensor& db,
                     GradMode db_mode) override {
    if (da.defined())
      cuda::strided_copy(da.dtype(), act(da), dy.dtype(), act(dy), cuda::strided4(da, dy),
                         da_mode == GradMode::accumulate, stream_);
    if (db.defined())
      cuda::strided_copy(db.dtype(), act(db), dy.dtype(), act(dy), cuda::strided4(db, dy),
                         db_mode == GradMode::accumulate, stream_);
  }
  cudaStream_t stream_;
};

class ChannelGateCuda final : public ChannelGate {
 public:
  ChannelGateCuda(Context& context, std::string name, const Shape& input_shape,
                  const Shape& gate_shape, Layout layout)
      : ChannelGate(std::move(name), input_shape, gate_shape, layout),
        stream_(cuda::stream_of(context)) {
    require_plain(this->name(), layout);
  }

 private:
  int64_t n() const { return input_shape()[0]; }
  int64_t c() const { return input_shape()[1]; }
  int64_t hw() const { return input_shape()[2] * input_shape()[3]; }
  bool channels_last() const { return layout() == Layout::nhwc; }
  void forward_impl(const Tensor& x, const Tensor& s, const Tensor& y) override {
    cuda::channel_gate_forward(x.dtype(), act(x), act(s), act(y), n(), c(), hw(), channels_last(),
                               stream_);
  }
  void backward_impl(const Tensor& x, const Tensor& s, const Tensor& dy, const Tensor& dx,
                     GradMode dx_mode, const Tensor& ds, GradMode ds_mode) override {
    cuda::require_dtype(name(), x.dtype(), {&s, &dy, &dx, &ds});
    cuda::channel_gate_backward(
        x.dtype(), act(x), act(s), act(dy), act(dx), dx_mode == GradMode::accumulate, act(ds),
        ds_mode == GradMode::accumulate, n(), c(), hw(), channels_last(), stream_);
  }
  cudaStream_t stream_;
};

class GlobalAvgPoolCuda final : public GlobalAvgPool {
 public:
  GlobalAvgPoolCuda(Context& context, std::string name, const Shape& input_shape, Layout layout)
      : GlobalAvgPool(std::move(name), input_shape, layout), stream_(cuda::stream_of(context)) {
    require_plain(this->name(), layout);
  }

 private:
  int64_t n() const { return input_shape()[0]; }
  int64_t c() const { return input_shape()[1]; }
  int64_t hw() const { return input_shape()[2] * input_shape()[3]; }
  bool channels_last() const { return input_layout() == Layout::nhwc; }
  void forward_impl(const Tensor& x, const Tensor& y) override {
    cuda::global_avg_pool_forward(x.dtype(), act(x), act(y), n(), c(), hw(), channels_last(),
                                  stream_);
  }
  void backward_impl(const Tensor& dy, const Tensor& dx, GradMode dx_mode) override {
    cuda::global_avg_pool_backward(dy.dtype(), act(dy), act(dx), n(), c(), hw(), channels_last(),
                                   dx_mode == GradMode::accumulate, stream_);
  }
  cudaStream_t stream_;
};

class ConcatCuda final : public Concat {
 public:
  ConcatCuda(Context& context, std::string name, const ConcatOptions& options,
             const std::vector<Shape>& input_shapes)
      : Concat(std::move(name), options, input_shapes), stream_(cuda::stream_of(context)) {}

 private:
  void forward_impl(const std::vector<Tensor>& inputs, const Tensor& y) override {
    int64_t offset = 0;
    for (const Tensor& x : inputs) {
      const Tensor slice = y.slice(1, offset, offset + x.dim(1));
      cuda::strided_copy(slice.dtype(), act(slice), x.dtype(), act(x), cuda::strided4(slice, x),
                         false, stream_);
      offset += x.dim(1);
    }
  }
  void backward_impl(const Tensor& dy, const std::vector<Tensor>& dinputs,
                     const std::vector<GradMode>& modes) override {
    int64_t offset = 0;
    for (std::size_t k = 0; k < dinputs.size(); ++k) {
      const int64_t channels = input_shapes()[k][1];
      const Tensor slice = dy.slice(1, offset, offset + channels);
      offset += channels;
      if (!dinputs[k].defined()) continue;
      cuda::strided_copy(dinputs[k].dtype(), act(dinputs[k]), slice.dtype(), act(slice),
                         cuda::strided4(dinputs[k], slice), modes[k] == GradMode::accumulate,
                         stream_);
    }
  }
  cudaStream_t stream_;
};

}  // namespace

std::unique_ptr<Relu> make_relu_cuda(Context& context, std::string name, const Shape& shape,
                                     Layout layout) {
  return std::make_unique<ReluCuda>(context, std::move(name), shape, layout);
}
std::unique_ptr<Add> make_add_cuda(Context& context, std::string name, const Shape& a_shape,
                                   const Shape& b_shape, Layout layout) {
  return std::make_unique<AddCuda>(context, std::move(name), a_shape, b_shape, layout);
}
std::unique_ptr<ChannelGate> make_channel_gate_cuda(Context& context, std::string name,
                                                    const Shape& input_shape,
                                                    const Shape& gate_shape, Layout layout) {
  return std::make_unique<ChannelGateCuda>(context, std::move(name), input_shape, gate_shape,
                                           layout);
}
std::unique_ptr<GlobalAvgPool> make_global_avg_pool_cuda(Context& context, std::string name,
                                                         const Shape& input_shape,
                                                         Layout input_layout) {
  return std::make_unique<GlobalAvgPoolCuda>(context, std::move(name), input_shape, input_layout);
}
std::unique_ptr<Concat> make_concat_cuda(Context& context, std::string name,
                                         const ConcatOptions& options,
                                         const std::vector<Shape>& input_shapes) {
  return std::make_unique<ConcatCuda>(context, std::move(name), options, input_shapes);
}

void write_gradient_cuda(const Tensor& dst, const Tensor& src, bool accumulate) {
  cuda::strided_copy(dst.dtype(), cuda::act(dst), src.dtype(), cuda::act(src),
                     cuda::strided4(dst, src), accumulate, cuda::current_stream());
}

}  // namespace convnet
