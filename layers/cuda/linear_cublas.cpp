// Linear on the GPU: cuBLAS GEMMs (cublasGemmEx) over row-major matrices,
// computed as their column-major transposes. f32 data uses f32 compute
// (strict FMA, no TF32) unless the context allows TF32; under mixed
// precision x, y, dx, dy are bf16 / f16, cuBLAS accumulates in f32 on tensor
// cores, the f32 weight is converted into the weights scratch for each call
// and the weight gradient is accumulated straight into the f32 gradient
// (cuBLAS takes half A and B with an f32 C). The bias and its gradient are
// the per-channel kernels of kernels.h over (N, out_features, 1).
#include <cstdint>

#include "layers/cuda/cudnn_util.h"
#include "layers/linear.h"

namespace convnet {
namespace {

cudaDataType_t cublas_type(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return CUDA_R_32F;
    case DType::bf16:
      return CUDA_R_16BF;
    case DType::f16:
      return CUDA_R_16F;
    default:
      CONVNET_CHECK(false, "cuBLAS has no type for ", to_string(dtype));
  }
  return CUDA_R_32F;
}

class LinearCublas final : public Linear {
 public:
  LinearCublas(Context& context, std::string name, const LinearOptions& options,
               const Shape& input_shape)
      : Linear(std::move(name), options, input_shape),
        context_(context),
        dtype_(context.activation_dtype()),
        compute_(context.allow_tf32() && context.activation_dtype() == DType::f32
                     ? CUBLAS_COMPUTE_32F_FAST_TF32
                     : CUBLAS_COMPUTE_32F) {
    cublas_type(dtype_);  // a clear error for a type cuBLAS lacks
    // The converted weight's scratch reaches its size now, not inside a step.
    if (dtype_ != DType::f32)
      context.scratch(Scratch::weights,
                      static_cast<std::size_t>(weight_shape().numel()) * dtype_size(dtype_));
  }

 private:
  int batch() const { return static_cast<int>(input_shape()[0]); }
  int in() const { return static_cast<int>(options().in_features); }
  int out() const { return static_cast<int>(options().out_features); }
  cudaStream_t stream() const { return context_.gpu().stream; }

  // C (col-major m x n, ldc) = alpha op(A) op(B) + beta C, f32 scalars.
  void gemm(cublasOperation_t op_a, cublasOperation_t op_b, int m, int n, int k, const void* a,
            DType a_type, int lda, const void* b, DType b_type, int ldb, float beta, void* c,
            DType c_type, int ldc) {
    const float alpha = 1.0f;
    CONVNET_CUBLAS(cublasGemmEx(context_.gpu().cublas, op_a, op_b, m, n, k, &alpha, a,
                                cublas_type(a_type), lda, b, cublas_type(b_type), ldb, &beta, c,
                                cublas_type(c_type), ldc, compute_, CUBLAS_GEMM_DEFAULT));
  }

  // The weight as the GEMMs read it: the stored f32 one, or its copy in the
  // activation type (weights scratch) under mixed precision.
  const void* weight_in_activation_type(const Tensor& weight) {
    if (dtype_ == DType::f32) return cuda::device_ptr(weight);
    const Shape s = weight_shape();
    void* data = context_.scratch(Scratch::weights,
                                  static_cast<std::size_t>(s.numel()) * dtype_size(dtype_));
    const Tensor copy = Tensor::wrap(data, s, dtype_, Device::cuda, s.contiguous_strides());
    cuda::strided_copy(dtype_, data, DType::f32, cuda::device_ptr(weight),
                       cuda::strided4(copy, weight), false, stream());
    return data;
  }

  void require_dense(const Tensor& t, const char* what) const {
    CONVNET_CHECK(!t.defined() || t.is_contiguous(), "layer ", name(), ": ", what,
                  " must be contiguous on the GPU");
  }

  // Row-major y (N, out) = x (N, in) W^T is, column-major, y^T = W^T' x^T'
  // with W' = W viewed as (in, out): GEMM (T, N), m = out, n = N, k = in.
  void forward_impl(const Tensor& x, const Tensor& weight, const Tensor& bias,
                    const Tensor& y) override {
    cuda::require_dtype(name(), dtype_, {&x, &y});
    require_dense(x, "the input");
    require_dense(y, "the output");
    gemm(CUBLAS_OP_T, CUBLAS_OP_N, out(), batch(), in(), weight_in_activation_type(weight), dtype_,
         in(), cuda::act(x), dtype_, in(), 0.0f, cuda::act(y), dtype_, out());
    if (bias.defined())
      cuda::add_channel_bias(dtype_, cuda::act(y), cuda::device_ptr(bias), batch(), out(), 1, false,
                             stream());
  }

  // dx (N, in) = dy (N, out) W: column-major dx^T = W' dy^T, GEMM (N, N),
  // m = in, n = N, k = out. dW (out, in) += dy^T x: column-major
  // dW' (in, out) += x^T' dy^T'^T, GEMM (N, T), m = in, n = out, k = N.
  void backward_impl(const Tensor& x, const Tensor& weight, const Tensor& dy, const Tensor& dx,
                     GradMode dx_mode, const Tensor& dweight, const Tensor& dbias) override {
    cuda::require_dtype(name(), dtype_, {&x, &dy, &dx});
    require_dense(x, "the input");
    require_dense(dy, "the output gradient");
    require_dense(dx, "the input gradient");
    require_dense(dweight, "the weight gradient");
    if (dx.defined())
      gemm(CUBLAS_OP_N, CUBLAS_OP_N, in(), batch(), out(), weight_in_activation_type(weight),
           dtype_, in(), cuda::act(dy), dtype_, out(),
           dx_mode == GradMode::accumulate ? 1.0f : 0.0f, cuda::act(dx), dtype_, in());
    gemm(CUBLAS_OP_N, CUBLAS_OP_T, in(), out(), batch(), cuda::act(x), dtype_, in(), cuda::act(dy),
         dtype_, out(), 1.0f, cuda::device_ptr(dweight), DType::f32, in());
    if (dbias.defined())
      cuda::accumulate_channel_sums(dtype_, cuda::act(dy), cuda::device_ptr(dbias), batch(), out(),
                                    1, false, stream());
  }

  Context& context_;
  DType dtype_;  // of x, y, dx, dy (the weight and its gradient are f32)
  cublasComputeType_t compute_;
};

}  // namespace

std::unique_ptr<Linear> make_linear_cublas(Context& context, std::string name,
                                           const LinearOptions& options, const Shape& input_shape) {
  return std::make_unique<LinearCublas>(context, std::move(name), options, input_shape);
}

}  // namespace convnet
