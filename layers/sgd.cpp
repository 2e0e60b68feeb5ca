#include "layers/sgd.h"

#include <vector>

#include "core/error.h"
#ifdef CONVNET_HAVE_CUDA
#include "core/cuda/check.h"
#include "core/cuda/runtime.h"
#include "layers/cuda/kernels.h"
#endif

namespace convnet {

Sgd::Sgd(Context& context, const SgdOptions& options, std::vector<ParamSegment> segments,
         int64_t num_params)
    : options_(options), segments_(std::move(segments)), num_params_(num_params) {
  CONVNET_CHECK(options.momentum >= 0, "SGD momentum must be >= 0, got ", options.momentum);
  CONVNET_CHECK(options.weight_decay >= 0, "SGD weight decay must be >= 0, got ",
                options.weight_decay);
  CONVNET_CHECK(options.dampening >= 0 && options.dampening <= 1,
                "SGD dampening must be in [0, 1], got ", options.dampening);
  CONVNET_CHECK(!options.nesterov || (options.momentum > 0 && options.dampening == 0),
                "Nesterov momentum requires momentum > 0 and zero dampening");
  CONVNET_CHECK(num_params > 0, "SGD over an empty parameter buffer");
  int64_t next = 0;
  for (const ParamSegment& s : segments_) {
    CONVNET_CHECK(s.offset == next && s.size > 0,
                  "SGD parameter segments must tile the buffer: "
                  "segment at offset ",
                  s.offset, " of size ", s.size, ", expected offset ", next);
    next += s.size;
  }
  CONVNET_CHECK(next == num_params, "SGD parameter segments cover ", next, " of ", num_params,
                " parameters");
  if (options.momentum > 0 && context.backend() == Backend::cpu)
    momentum_ = Tensor::zeros(Shape{num_params}, context.allocator());
#ifdef CONVNET_HAVE_CUDA
  if (context.backend() == Backend::cuda) {
    stream_ = static_cast<void*>(context.gpu().stream);
    if (options.momentum > 0) {
      momentum_ = Tensor::empty(Shape{num_params}, context.allocator());
      cuda::zero(momentum_, context.gpu().stream);
    }
    const std::size_t count = segments_.size();
    std::vector<int64_t> ends(count);
    std::vector<float> decays(count);
    for (std::size_t k = 0; k < count; ++k) {
      ends[k] = segments_[k].offset + segments_[k].size;
      decays[k] = segments_[k].apply_weight_decay ? static_cast<float>(options.weight_decay) : 0.0f;
    }
    // count int64 ends, then count f32 decays, in f32-sized slots
    segment_table_ = Tensor::empty(Shape{static_cast<int64_t>(3 * count)}, context.allocator());
    char* table = static_cast<char*>(segment_table_.raw_data());
    // On the compute stream (non-blocking: the legacy default stream would
    // not order a pageable copy before the first update), waited for here.
    cudaStream_t stream = context.gpu().stream;
    CONVNET_CUDA(cudaMemcpyAsync(table, ends.data(), count * sizeof(int64_t),
                                 cudaMemcpyHostToDevice, stream));
    CONVNET_CUDA(cudaMemcpyAsync(table + count * sizeof(int64_t), decays.data(),
                                 count * sizeof(float), cudaMemcpyHostToDevice, stream));
    context.gpu().synchronize();
  }
#endif
}

namespace {

struct SgdSegmentArgs {
  float* w;
  const float* g;
  float* v;
  int64_t begin, end;
  float scale, decay, rate, momentum, keep;
  bool first, nesterov;
};

// One segment's update. Unscaled (kScaled false), the expression is exactly
// that of versions before loss scaling: multiplying by 1 would let the
// compiler contract it into another FMA and change the bits of every run.
template <bool kScaled>
void sgd_segment(const SgdSegmentArgs& a) {
  float* w = a.w;
  const float* g = a.g;
  float* v = a.v;
#pragma omp parallel for simd schedule(static)
  for (int64_t i = a.begin; i < a.end; ++i) {
    float d = kScaled ? g[i] * a.scale + a.decay * w[i] : g[i] + a.decay * w[i];
    if (v) {
      v[i] = a.first ? d : a.momentum * v[i] + a.keep * d;
      d = a.nesterov ? d + a.momentum * v[i] : v[i];
    }
    w[i] -= a.rate * d;
  }
}

}  // namespace

void Sgd::step_cuda(const Tensor& params, const Tensor& grads, double lr, float grad_scale) {
#ifdef CONVNET_HAVE_CUDA
  CONVNET_CHECK(grads.device() == Device::cuda && stream_ != nullptr,
                "SGD on GPU parameters needs GPU gradients and a cuda context");
  float* v = options_.momentum > 0 ? momentum_.data<float>() : nullptr;
  const int64_t count = static_cast<int64_t>(segments_.size());
  const char* table = static_cast<const char*>(segment_table_.raw_data());
  cuda::sgd_step_segments(params.data<float>(), grads.data<float>(), v, num_params_,
                          reinterpret_cast<const int64_t*>(table),
                          reinterpret_cast<const float*>(table + count * sizeof(int64_t)), count,
                          static_cast<float>(lr), static_cast<float>(options_.momentum),
                          static_cast<float>(1.0 - options_.dampening), step_count_ == 0,
                          options_.nesterov, grad_scale, static_cast<cudaStream_t>(stream_));
  ++step_count_;
#else
  CONVNET_CHECK(false, "SGD on GPU memory in a build without the GPU backend");
#endif
}

void Sgd::set_step_count(int64_t steps) {
  CONVNET_CHECK(steps >= 0, "negative SGD step count ", steps);
  step_count_ = steps;
}

void Sgd::step(const Tensor& params, const Tensor& grads, double lr, double grad_scale) {
  CONVNET_CHECK(params.numel() == num_params_ && params.is_contiguous(),
                "SGD parameters have shape ", params.shape(), ", expected ", num_params_,
                " contiguous values");
  CONVNET_CHECK(grads.numel() == num_params_ && grads.is_contiguous(), "SGD gradients have shape ",
                grads.shape(), ", expected ", num_params_, " contiguous values");
  CONVNET_CHECK(lr >= 0, "negative learning rate ", lr);
  CONVNET_CHECK(grad_scale > 0, "SGD gradient scale must be positive, got ", grad_scale);
  const float scale = static_cast<float>(grad_scale);
  if (params.device() == Device::cuda) return step_cuda(params, grads, lr, scale);
  float* w = params.data<float>();
  const float* g = grads.data<float>();
  float* v = options_.momentum > 0 ? momentum_.data<float>() : nullptr;
  const float rate = static_cast<float>(lr);
  const float momentum = static_cast<float>(options_.momentum);
  const float keep = static_cast<float>(1.0 - options_.dampening);
  const bool first = step_count_ == 0;
  const bool nesterov = options_.nesterov;
  for (const ParamSegment& s : segments_) {
    const float decay = s.apply_weight_decay ? static_cast<float>(options_.weight_decay) : 0.0f;
    const SgdSegmentArgs args{w,    g,        v,    s.offset, s.offset + s.size, scale, decay,
                              rate, momentum, keep, first,    nesterov};
    if (scale == 1.0f)
      sgd_segment<false>(args);
    else
      sgd_segment<true>(args);
  }
  ++step_count_;
}

}  // namespace convnet
