// What bf16 would buy on this CPU: one convolution's training work
// (forward, backward data, backward weights) straight on oneDNN, in f32 and
// in bf16 (bf16 activations and weights, f32 weight gradient: what a CPU
// mixed-precision step would run), every layout left to oneDNN
// (format_tag::any), so each dtype gets its best kernel. Prints the kernel
// names (jit:avx512_core, brgconv:avx512_core_amx, ...) and the median.
//
// usage: onednn_dtype_bench N C_IN C_OUT HW KERNEL STRIDE ITERS f32|bf16
// prints: onednn_conv DTYPE N C_in C_out HW K S median_ms fwd_impl bwd_data_impl bwd_weights_impl
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <oneapi/dnnl/dnnl.hpp>
#include <string>
#include <vector>

using dnnl::memory;

int run(int argc, char** argv);

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const dnnl::error& e) {
    // bf16 on a CPU without bf16 support (AVX2): oneDNN has no kernel to offer.
    std::fprintf(stderr, "onednn_dtype_bench: oneDNN failed: %s (status %d)\n", e.what(),
                 static_cast<int>(e.status));
    return 1;
  }
}

int run(int argc, char** argv) {
  if (argc != 9) {
    std::fprintf(stderr,
                 "usage: onednn_dtype_bench N C_IN C_OUT HW KERNEL STRIDE ITERS f32|bf16\n");
    return 2;
  }
  const memory::dim n = std::atol(argv[1]), ci = std::atol(argv[2]), co = std::atol(argv[3]),
                    hw = std::atol(argv[4]), k = std::atol(argv[5]), s = std::atol(argv[6]);
  const int iters = std::atoi(argv[7]);
  const std::string dtype = argv[8];
  const auto dt = dtype == "bf16" ? memory::data_type::bf16 : memory::data_type::f32;
  const memory::dim ho = (hw + 2 * (k / 2) - k) / s + 1;
  const memory::dims strides{s, s}, pad{k / 2, k / 2};
  const auto any = memory::format_tag::any;
  const memory::desc x({n, ci, hw, hw}, dt, any), y({n, co, ho, ho}, dt, any);
  const memory::desc w({co, ci, k, k}, dt, any), dw({co, ci, k, k}, memory::data_type::f32, any);
  dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(engine);
  const auto algo = dnnl::algorithm::convolution_direct;
  const dnnl::convolution_forward::primitive_desc fwd(
      {dnnl::prop_kind::forward_training, algo, x, w, memory::desc(), y, strides, pad, pad},
      engine);
  const dnnl::convolution_backward_data::primitive_desc bwd_data({algo, x, w, y, strides, pad, pad},
                                                                 engine, fwd);
  const dnnl::convolution_backward_weights::primitive_desc bwd_w(
      {algo, x, dw, memory::desc(), y, strides, pad, pad}, engine, fwd);
  // Zero-filled memory in each primitive's chosen layouts (values do not change the time).
  auto filled = [&](const memory::desc& md) {
    memory m(md, engine);
    std::fill_n(static_cast<char*>(m.get_data_handle()), md.get_size(), 0);
    return m;
  };
  memory mx = filled(fwd.src_desc()), mw = filled(fwd.weights_desc()), my = filled(fwd.dst_desc());
  memory mdy = filled(bwd_data.diff_dst_desc()), mdx = filled(bwd_data.diff_src_desc());
  memory mw_bwd = filled(bwd_data.weights_desc()), mdw = filled(bwd_w.diff_weights_desc());
  memory mx_bwd = filled(bwd_w.src_desc()), mdy_bwd = filled(bwd_w.diff_dst_desc());
  std::vector<double> ms;
  for (int i = 0; i < iters + 1; ++i) {
    const auto start = std::chrono::steady_clock::now();
    dnnl::convolution_forward(fwd).execute(
        stream, {{DNNL_ARG_SRC, mx}, {DNNL_ARG_WEIGHTS, mw}, {DNNL_ARG_DST, my}});
    dnnl::convolution_backward_data(bwd_data).execute(
        stream, {{DNNL_ARG_DIFF_DST, mdy}, {DNNL_ARG_WEIGHTS, mw_bwd}, {DNNL_ARG_DIFF_SRC, mdx}});
    dnnl::convolution_backward_weights(bwd_w).execute(
        stream,
        {{DNNL_ARG_SRC, mx_bwd}, {DNNL_ARG_DIFF_DST, mdy_bwd}, {DNNL_ARG_DIFF_WEIGHTS, mdw}});
    stream.wait();
    const auto end = std::chrono::steady_clock::now();
    if (i > 0) ms.push_back(std::chrono::duration<double, std::milli>(end - start).count());
  }
  std::sort(ms.begin(), ms.end());
  std::printf("onednn_conv %s %ld %ld %ld %ld %ld %ld %.3f %s %s %s\n", dtype.c_str(), long(n),
              long(ci), long(co), long(hw), long(k), long(s), ms[ms.size() / 2],
              fwd.impl_info_str(), bwd_data.impl_info_str(), bwd_w.impl_info_str());
  return 0;
}
