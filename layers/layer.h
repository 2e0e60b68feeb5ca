// Conventions shared by every layer in layers/.
//
// A layer is a kernel with a fixed input shape, chosen at construction: the
// constructor validates the wiring (throwing convnet::Error naming the layer
// and the shapes) and builds the backend's primitives once; forward/backward
// then run them many times without allocating (except documented scratch
// that is allocated once, on first use).
//
// Parameters (weights, BN scale/shift) and buffers (BN running statistics)
// are not owned by the layer: they are tensors passed in, normally views into
// the model's flat parameter buffer.
//
// Gradient rule:
//   - parameter gradients always ACCUMULATE (+=) into the given tensors, so
//     micro-batches and shared parameters add up; the trainer zeroes them;
//   - activation (input) gradients OVERWRITE by default; a caller whose tensor
//     fans out to several consumers passes GradMode::accumulate for all but
//     the first consumer's backward.
//
// Each layer X has: X.h (options, shapes, contract), X.cpp (shape validation
// and backend dispatch with create_on_backend below), X_onednn.cpp (CPU
// backend), X_ref.cpp (the double precision reference used only as the test
// oracle) and cuda/X_cuda.cu or cuda/X_cudnn (GPU backend).
#pragma once

#include <string>
#include <type_traits>
#include <utility>

#include "core/context.h"
#include "core/error.h"
#include "core/tensor.h"

namespace convnet {

enum class Mode { training, inference };
enum class GradMode { overwrite, accumulate };

// Throws "layer NAME: TENSOR has shape A, expected B" when shapes differ.
void check_shape(const std::string& layer, const char* tensor_name, const Shape& actual,
                 const Shape& expected);
// Which memory layouts a layer accepts for one of its tensors.
enum class Strides { contiguous, any };

// Throws (naming the layer and the tensor) unless the tensor is defined, f32,
// has the expected shape and, for Strides::contiguous, is contiguous (nchw).
void check_tensor(const std::string& layer, const char* tensor_name, const Tensor& tensor,
                  const Shape& expected, Strides strides = Strides::contiguous);
// Same, for a dense tensor of the given layout (nchw: contiguous; nchw8c, nchw16c: blocked).
void check_tensor(const std::string& layer, const char* tensor_name, const Tensor& tensor,
                  const Shape& expected, Layout layout);

// Throws unless `layout` can hold `shape` (the blocked layouts and nhwc: rank 4).
void check_layout(const std::string& layer, const Shape& shape, Layout layout);

// dst (+)= src according to mode; same shape, any strides (host f32).
void write_gradient(const Tensor& dst, const Tensor& src, GradMode mode);
// dst += src elementwise (host f32, same shape).
void add_into(const Tensor& dst, const Tensor& src);
// dst[:, dst_begin : dst_begin + count] (+)= src[:, src_begin : src_begin + count]
// according to mode, for (N, C, H, W) tensors of one layout with the same N,
// H and W. nchw and nhwc go through channel slices (any device); in nchw8c and
// nchw16c (host) the ranges may start inside a block, and when the range
// ends at dst's last channel the padding lanes after it are set to zero.
void write_channels(const Tensor& dst, int64_t dst_begin, const Tensor& src, int64_t src_begin,
                    int64_t count, GradMode mode);
// t *= factor (dense f32, host or GPU).
void scale_in_place(const Tensor& t, float factor);
// dst (+)= factor * src per mode, element by element over the dense storage of
// two tensors of one shape, layout and type (f32, bf16; f16 on the GPU),
// computed in f32; dst may be src (overwrite). Host or GPU.
void write_scaled(const Tensor& dst, const Tensor& src, float factor, GradMode mode);
// True unless t (contiguous f32, host or GPU) holds an inf or NaN: fp16 loss
// scaling's overflow test. On the GPU it waits for `context`'s stream (one
// 4-byte copy back per call).
bool all_finite(Context& context, const Tensor& t);
// All of the above run on the GPU (on cuda::current_stream()) when dst is
// device memory; this is their GPU implementation (builds with CUDA only).
void write_gradient_cuda(const Tensor& dst, const Tensor& src, bool accumulate);

// A layer's GPU factory, or nullptr in a build without the GPU backend
// (whose Context refuses Backend::cuda, so create_on_backend never needs it).
#ifdef CONVNET_HAVE_CUDA
#define CONVNET_GPU_FACTORY(factory) (factory)
#else
#define CONVNET_GPU_FACTORY(factory) nullptr
#endif

// The layer built by the context's backend: make_gpu(context, args...) on
// the GPU, make_cpu(context, args...) on the CPU. Every layer's create()
// dispatches through this one function.
template <typename MakeCpu, typename MakeGpu, typename... Args>
auto create_on_backend(Context& context, MakeCpu make_cpu, MakeGpu make_gpu, Args&&... args) {
  if (context.backend() == Backend::cuda) {
    if constexpr (std::is_null_pointer_v<MakeGpu>)
      CONVNET_CHECK(false, "a GPU layer in a build without the GPU backend");
    else
      return make_gpu(context, std::forward<Args>(args)...);
  }
  return make_cpu(context, std::forward<Args>(args)...);
}

}  // namespace convnet
