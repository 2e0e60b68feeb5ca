// Conv2d on cuDNN: one descriptor set per layer, algorithms measured once
// per distinct problem (cudnnFind*) and cached for the process, workspace from
// the context's scratch. fp32 math is strict (FMA kernels only, no TF32) unless
// the context allows TF32 (ContextOptions::allow_tf32, --precision tf32): then
// tensor-core algorithms on fp32 data are chosen when they are fastest. Strict
// results match the CPU backend to float rounding.
//
// Mixed precision (context activation dtype bf16 / f16): x, y, dx, dy are of
// that type and cuDNN accumulates in f32 (convolution compute type FLOAT) on
// tensor cores. The stored weight stays f32 (the master copy): each call
// converts it into the weights scratch (in KRSC order for NHWC), and the
// weight gradient is computed into scratch in the activation type and added
// to the f32 gradient, as PyTorch's autocast does per op.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <sstream>

#include "layers/conv2d.h"
#include "layers/cuda/cudnn_util.h"

namespace convnet {
namespace {

constexpr std::size_t kMaxWorkspace = std::size_t{512} << 20;

struct ConvAlgorithms {
  cudnnConvolutionFwdAlgo_t forward{};
  cudnnConvolutionBwdDataAlgo_t backward_data{};
  cudnnConvolutionBwdFilterAlgo_t backward_filter{};
  std::size_t forward_bytes = 0, backward_data_bytes = 0, backward_filter_bytes = 0;
  cudnnMathType_t forward_math{}, backward_data_math{}, backward_filter_math{};
  // False when cuDNN offers none: an error only if an input gradient is
  // asked for (a stem convolution's never is).
  bool has_backward_data = false;
};

// The fastest result that fits the workspace limit, deterministic ones first
// (so a resumed run repeats an uninterrupted one; also where only default
// math found under an FMA descriptor is left): any math but fp16
// down-conversion with TF32 allowed; else FMA kernels first, then default
// math found under an FMA descriptor, never tensor-op math.
// CONVNET_CUDNN_DETERMINISTIC=0 drops the deterministic-first rule (the
// fastest algorithm wins; a resumed run then no longer repeats an
// uninterrupted one bit for bit): for measuring what determinism costs.
bool prefer_deterministic() {
  static const bool prefer = [] {
    const char* v = std::getenv("CONVNET_CUDNN_DETERMINISTIC");
    return v == nullptr || std::string(v) != "0";
  }();
  return prefer;
}

// Null when cuDNN offers no usable algorithm.
template <typename Perf>
const Perf* pick(const std::vector<Perf>& results, int count, bool tensor_ops) {
  const auto usable = [&](const Perf& r, bool deterministic_only, bool fma_only) {
    return r.status == CUDNN_STATUS_SUCCESS && r.memory <= kMaxWorkspace &&
           r.mathType != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION &&
           (!fma_only || r.mathType == CUDNN_FMA_MATH) &&
           (tensor_ops || r.mathType != CUDNN_TENSOR_OP_MATH) &&
           (!deterministic_only || r.determinism == CUDNN_DETERMINISTIC);
  };
  for (bool deterministic_only : {prefer_deterministic(), false})
    for (bool fma_only : {!tensor_ops, false})
      for (int i = 0; i < count; ++i)
        if (usable(results[i], deterministic_only, fma_only)) return &results[i];
  return nullptr;
}

template <typename Perf>
const Perf& require(const Perf* found, const std::string& layer, const char* what) {
  CONVNET_CHECK(found != nullptr, "layer ", layer, ": cuDNN offers no ", what,
                " algorithm within a workspace of ", kMaxWorkspace, " bytes");
  return *found;
}

class Conv2dCudnn final : public Conv2d {
 public:
  Conv2dCudnn(Context& context, std::string name, const Conv2dOptions& options,
              const Shape& input_shape)
      : Conv2d(std::move(name), options, input_shape),
        context_(context),
        dtype_(context.activation_dtype()) {
    cuda::require_gpu_layout(this->name(), options.input_layout);
    cuda::require_gpu_layout(this->name(), options.output_layout);
    // Activations in their layout. The stored weight is (K, C, R, S); a
    // channels-last convolution gets a (K, R, S, C) copy, as cuDNN's NHWC
    // (tensor-core) kernels expect, and its weight gradient is transposed back.
    x_.set(input_shape, options.input_layout, dtype_);
    y_.set(output_shape(), options.output_layout, dtype_);
    bias_.set(Shape{options.out_channels});
    channels_last_filter_ =
        options.input_layout == Layout::nhwc && options.output_layout == Layout::nhwc;
    filter_copy_ = channels_last_filter_ || dtype_ != DType::f32;
    const Shape w = weight_shape();
    CONVNET_CUDNN(cudnnSetFilter4dDescriptor(
        w_.get(), cuda::cudnn_type(dtype_),
        channels_last_filter_ ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW, static_cast<int>(w[0]),
        static_cast<int>(w[1]), static_cast<int>(w[2]), static_cast<int>(w[3])));
    const int pad = static_cast<int>(options.padding), stride = static_cast<int>(options.stride);
    CONVNET_CUDNN(cudnnSetConvolution2dDescriptor(conv_.get(), pad, pad, stride, stride, 1, 1,
                                                  CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    CONVNET_CUDNN(cudnnSetConvolutionGroupCount(conv_.get(), static_cast<int>(options.groups)));
    tensor_ops_ = context.allow_tf32() || dtype_ != DType::f32;
    CONVNET_CUDNN(cudnnSetConvolutionMathType(conv_.get(),
                                              tensor_ops_ ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH));
    algorithms_ = find_algorithms();
    // Scratch reaches its size now, not inside a step: growing it there
    // would cudaFree while NCCL may be launching (a possible deadlock).
    context.scratch(Scratch::workspace,
                    std::max({algorithms_.forward_bytes, algorithms_.backward_data_bytes,
                              algorithms_.backward_filter_bytes}));
    if (filter_copy_) {
      filter_view(Scratch::weights);
      filter_view(Scratch::weight_gradient);
    }
  }

 private:
  std::string problem_key() const {
    std::ostringstream key;
    const Conv2dOptions& o = options();
    key << context_.gpu().device << ' ' << input_shape() << ' ' << o.out_channels << ' ' << o.kernel
        << ' ' << o.stride << ' ' << o.padding << ' ' << o.groups << ' '
        << to_string(o.input_layout) << ' ' << to_string(o.output_layout) << ' '
        << to_string(dtype_) << (tensor_ops_ ? " tensor-ops" : "");
    return key.str();
  }

  ConvAlgorithms find_algorithms() {
    static std::mutex mutex;
    static std::map<std::string, ConvAlgorithms> cache;
    const std::string key = problem_key();
    std::lock_guard<std::mutex> lock(mutex);
    auto it = cache.find(key);
    if (it != cache.end()) return it->second;

    cudnnHandle_t h = context_.gpu().cudnn;
    ConvAlgorithms a;
    int count = 0;
    // Each search runs under the search math (any, or FMA only); the chosen
    // algorithm's workspace is then asked for under its own math type, and
    // the larger of that and the measured size is kept.
    const auto search_math = [&] {
      CONVNET_CUDNN(cudnnSetConvolutionMathType(conv_.get(),
                                                tensor_ops_ ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH));
    };
    std::vector<cudnnConvolutionFwdAlgoPerf_t> fwd(CUDNN_CONVOLUTION_FWD_ALGO_COUNT);
    CONVNET_CUDNN(cudnnFindConvolutionForwardAlgorithm(h, x_.get(), w_.get(), conv_.get(), y_.get(),
                                                       static_cast<int>(fwd.size()), &count,
                                                       fwd.data()));
    const auto& f = require(pick(fwd, count, tensor_ops_), name(), "forward");
    a.forward = f.algo;
    a.forward_math = f.mathType;
    use_math(a.forward_math);
    requery(cudnnGetConvolutionForwardWorkspaceSize(h, x_.get(), w_.get(), conv_.get(), y_.get(),
                                                    a.forward, &a.forward_bytes),
            f.memory, &a.forward_bytes);

    search_math();
    std::vector<cudnnConvolutionBwdDataAlgoPerf_t> data(CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT);
    const cudnnStatus_t data_status = cudnnFindConvolutionBackwardDataAlgorithm(
        h, w_.get(), y_.get(), conv_.get(), x_.get(), static_cast<int>(data.size()), &count,
        data.data());
    if (!cuda::refused(data_status)) CONVNET_CUDNN(data_status);
    const auto* d = data_status == CUDNN_STATUS_SUCCESS ? pick(data, count, tensor_ops_) : nullptr;
    if (d != nullptr) {
      a.has_backward_data = true;
      a.backward_data = d->algo;
      a.backward_data_math = d->mathType;
      use_math(a.backward_data_math);
      requery(
          cudnnGetConvolutionBackwardDataWorkspaceSize(h, w_.get(), y_.get(), conv_.get(), x_.get(),
                                                       a.backward_data, &a.backward_data_bytes),
          d->memory, &a.backward_data_bytes);
    }

    search_math();
    std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> filter(
        CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT);
    CONVNET_CUDNN(cudnnFindConvolutionBackwardFilterAlgorithm(
        h, x_.get(), y_.get(), conv_.get(), w_.get(), static_cast<int>(filter.size()), &count,
        filter.data()));
    const auto& g = require(pick(filter, count, tensor_ops_), name(), "backward-filter");
    a.backward_filter = g.algo;
    a.backward_filter_math = g.mathType;
    use_math(a.backward_filter_math);
    requery(
        cudnnGetConvolutionBackwardFilterWorkspaceSize(h, x_.get(), y_.get(), conv_.get(), w_.get(),
                                                       a.backward_filter, &a.backward_filter_bytes),
        g.memory, &a.backward_filter_bytes);
    cache.emplace(key, a);
    // CONVNET_CUDNN_LOG=1: one line per measured problem (tests/gpu/check.sh
    // uses it to show which kernels a model gets).
    if (const char* log = std::getenv("CONVNET_CUDNN_LOG"); log != nullptr && *log == '1')
      std::fprintf(stderr,
                   "cudnn: %s [%s]: forward algo %d math %d %zu B, backward-data algo %d math %d "
                   "%zu B, backward-filter algo %d math %d %zu B\n",
                   name().c_str(), key.c_str(), static_cast<int>(a.forward),
                   static_cast<int>(a.forward_math), a.forward_bytes,
                   a.has_backward_data ? static_cast<int>(a.backward_data) : -1,
                   static_cast<int>(a.backward_data_math), a.backward_data_bytes,
                   static_cast<int>(a.backward_filter), static_cast<int>(a.backward_filter_math),
                   a.backward_filter_bytes);
    return a;
  }

  // *bytes = max(what cuDNN now asks for the chosen algorithm and math, what
  // the search measured); the measured size alone where the query refuses.
  static void requery(cudnnStatus_t status, std::size_t measured, std::size_t* bytes) {
    if (!cuda::refused(status)) CONVNET_CUDNN(status);
    *bytes = status == CUDNN_STATUS_SUCCESS ? std::max(*bytes, measured) : measured;
  }

  // The math the algorithm was measured with (strict mode: always FMA).
  void use_math(cudnnMathType_t math) {
    CONVNET_CUDNN(cudnnSetConvolutionMathType(conv_.get(), tensor_ops_ ? math : CUDNN_FMA_MATH));
  }

  void* workspace(std::size_t bytes) {
    return bytes == 0 ? nullptr : context_.scratch(Scratch::workspace, bytes);
  }

  // The weight as cuDNN reads it: the stored f32 (K, C, R, S) tensor, or its
  // copy in the weights scratch, (K, R, S, C) for a channels-last filter and
  // in the activation type under mixed precision.
  const void* filter(const Tensor& weight) {
    if (!filter_copy_) return cuda::device_ptr(weight);
    const Tensor copy = filter_view(Scratch::weights);
    cuda::strided_copy(dtype_, copy.raw_data(), DType::f32, cuda::device_ptr(weight),
                       cuda::strided4(copy, weight), false, context_.gpu().stream);
    return copy.raw_data();
  }
  // Scratch viewed as the (K, C, R, S) filter cuDNN reads: in the activation
  // type, stored (K, R, S, C) for a channels-last filter.
  Tensor filter_view(Scratch slot) {
    const Shape s = weight_shape();
    void* data = context_.scratch(slot, static_cast<std::size_t>(s.numel()) * dtype_size(dtype_));
    std::vector<int64_t> strides = s.contiguous_strides();
    if (channels_last_filter_) strides = {s[1] * s[2] * s[3], 1, s[3] * s[1], s[1]};
    return Tensor::wrap(data, s, dtype_, Device::cuda, strides);
  }
  bool channels_last_output() const { return options().output_layout == Layout::nhwc; }

  void forward_impl(const Tensor& x, const Tensor& weight, const Tensor& bias,
                    const Tensor& y) override {
    cudnnHandle_t h = context_.gpu().cudnn;
    const float one = 1.0f, zero = 0.0f;
    cuda::require_dtype(name(), dtype_, {&x, &y});
    const void* w = filter(weight);
    const std::size_t bytes = algorithms_.forward_bytes;
    use_math(algorithms_.forward_math);
    CONVNET_CUDNN(cudnnConvolutionForward(h, &one, x_.get(), cuda::act(x), w_.get(), w, conv_.get(),
                                          algorithms_.forward, workspace(bytes), bytes, &zero,
                                          y_.get(), cuda::act(y)));
    if (!bias.defined()) return;
    if (dtype_ == DType::f32) {
      CONVNET_CUDNN(cudnnAddTensor(h, &one, bias_.get(), cuda::device_ptr(bias), &one, y_.get(),
                                   cuda::device_ptr(y)));
      return;
    }
    const Shape& o = output_shape();
    cuda::add_channel_bias(dtype_, cuda::act(y), cuda::device_ptr(bias), o[0], o[1], o[2] * o[3],
                           channels_last_output(), context_.gpu().stream);
  }

  void backward_impl(const Tensor& x, const Tensor& weight, const Tensor& dy, const Tensor& dx,
                     GradMode dx_mode, const Tensor& dweight, const Tensor& dbias) override {
    cudnnHandle_t h = context_.gpu().cudnn;
    const float one = 1.0f, zero = 0.0f;
    cuda::require_dtype(name(), dtype_, {&x, &dy, &dx});
    if (dx.defined()) {
      CONVNET_CHECK(algorithms_.has_backward_data, "layer ", name(),
                    ": cuDNN offers no backward-data algorithm for this convolution within a "
                    "workspace of ",
                    kMaxWorkspace, " bytes");
      const void* w = filter(weight);
      const std::size_t bytes = algorithms_.backward_data_bytes;
      use_math(algorithms_.backward_data_math);
      CONVNET_CUDNN(cudnnConvolutionBackwardData(
          h, &one, w_.get(), w, y_.get(), cuda::act(dy), conv_.get(), algorithms_.backward_data,
          workspace(bytes), bytes, dx_mode == GradMode::accumulate ? &one : &zero, x_.get(),
          cuda::act(dx)));
    }
    const std::size_t bytes = algorithms_.backward_filter_bytes;
    use_math(algorithms_.backward_filter_math);
    // A copied filter's gradient goes to scratch (overwritten), then is
    // added to the stored f32 (K, C, R, S) gradient.
    const Tensor dcopy = filter_copy_ ? filter_view(Scratch::weight_gradient) : Tensor();
    CONVNET_CUDNN(cudnnConvolutionBackwardFilter(
        h, &one, x_.get(), cuda::act(x), y_.get(), cuda::act(dy), conv_.get(),
        algorithms_.backward_filter, workspace(bytes), bytes, filter_copy_ ? &zero : &one, w_.get(),
        filter_copy_ ? dcopy.raw_data() : cuda::device_ptr(dweight)));
    if (filter_copy_)
      cuda::strided_copy(DType::f32, cuda::device_ptr(dweight), dtype_, dcopy.raw_data(),
                         cuda::strided4(dweight, dcopy), true, context_.gpu().stream);
    if (!dbias.defined()) return;
    if (dtype_ == DType::f32) {
      CONVNET_CUDNN(cudnnConvolutionBackwardBias(h, &one, y_.get(), cuda::device_ptr(dy), &one,
                                                 bias_.get(), cuda::device_ptr(dbias)));
      return;
    }
    const Shape& o = output_shape();
    cuda::accumulate_channel_sums(dtype_, cuda::act(dy), cuda::device_ptr(dbias), o[0], o[1],
                                  o[2] * o[3], channels_last_output(), context_.gpu().stream);
  }

  Context& context_;
  DType dtype_;  // of x, y, dx, dy (the weight and its gradient are f32)
  cuda::TensorDescriptor x_, y_, bias_;
  cuda::FilterDescriptor w_;
  cuda::ConvolutionDescriptor conv_;
  ConvAlgorithms algorithms_;
  bool tensor_ops_ = false;            // TF32 allowed, or bf16 / f16 data
  bool channels_last_filter_ = false;  // (K, R, S, C) filter for NHWC activations
  bool filter_copy_ = false;           // cuDNN reads a converted copy of the weight
};

}  // namespace

std::unique_ptr<Conv2d> make_conv2d_cudnn(Context& context, std::string name,
                                          const Conv2dOptions& options, const Shape& input_shape) {
  return std::make_unique<Conv2dCudnn>(context, std::move(name), options, input_shape);
}

}  // namespace convnet
