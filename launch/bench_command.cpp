// convnet bench: training-step throughput of one model on synthetic data
// (forward, softmax cross-entropy, backward, SGD step, as the trainer runs
// them, fp16 loss scaling included), one JSON line out.
// Under mpirun it runs data-parallel: gradients are averaged in buckets that
// overlap backward, as in training, and rank 0 reports the global images/s
// and the communication time backward did not hide. With --device cuda each
// rank drives the GPU of its local rank (cuDNN layers, NCCL buckets); steps
// are timed in windows from an idle GPU to an idle GPU, with no host wait
// inside a window (as the trainer between log lines).
#include <sys/resource.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <random>

#include "comm/device_selection.h"
#include "comm/gradient_reducer.h"
#include "comm/mpi_communicator.h"
#ifdef CONVNET_HAVE_CUDA
#include "core/cuda/runtime.h"
#endif
#include "launch/commands.h"
#include "launch/option_table.h"
#include "layers/sgd.h"
#include "layers/softmax_cross_entropy.h"
#include "models/zoo.h"

namespace convnet {
namespace {

bool parse_on_off(const std::string& option, const std::string& value) {
  if (value == "on") return true;
  if (value == "off") return false;
  throw Error("--" + option + " must be on or off, got '" + value + "'");
}

void wait_for_device(Context& context) {
#ifdef CONVNET_HAVE_CUDA
  if (context.backend() == Backend::cuda) context.gpu().synchronize();
#endif
}

// Memory in use on the context's GPU as the driver counts it (convnet's
// allocations plus the CUDA context and the libraries' own), in MiB; -1 on the CPU.
long device_used_mib(Context& context) {
#ifdef CONVNET_HAVE_CUDA
  if (context.backend() == Backend::cuda) {
    std::size_t free_bytes = 0, total = 0;
    if (cudaMemGetInfo(&free_bytes, &total) == cudaSuccess)
      return static_cast<long>((total - free_bytes) >> 20);
  }
#endif
  return -1;
}

}  // namespace

int bench_command(const std::vector<std::string>& args) {
  namespace po = boost::program_options;
  std::string model, memory_efficient, device, precision, layout;
  int64_t batch = 0, size = 0, channels = 3, classes = 0;
  int steps = 0, threads = 0, warmup = 0;
  double bucket_mb = 25;
  bool overlap = true;
  po::options_description options("convnet bench [OPTIONS]: training-step throughput");
  options.add_options()("help,h", "show this help")("model", po::value(&model)->required(),
                                                    "model name (see 'convnet models')")(
      "batch-size", po::value(&batch)->default_value(16), "images per step")(
      "image-size", po::value(&size)->default_value(0),
      "input height and width (0: the model's default)")(
      "in-channels", po::value(&channels)->default_value(3), "input channels")(
      "num-classes", po::value(&classes)->default_value(0), "classes (0: the model's default)")(
      "steps", po::value(&steps)->default_value(5), "timed steps")(
      "warmup", po::value(&warmup)->default_value(1), "untimed steps first")(
      "threads", po::value(&threads)->default_value(0), "CPU threads (0: OMP_NUM_THREADS or all)")(
      "device", po::value(&device)->default_value("cpu"),
      "cpu, or cuda (the GPU of each rank's local rank)")(
      "layout", po::value(&layout)->default_value("auto"),
      "activations: on the GPU nchw, nhwc or auto (nhwc for bf16/fp16, else nchw); on the "
      "CPU nchw, nchw8c, nchw16c or auto (the block the CPU's kernels prefer)")(
      "precision", po::value(&precision)->default_value("fp32"),
      "fp32; on the GPU also tf32, bf16 or fp16 (mixed precision)")(
      "memory-efficient", po::value(&memory_efficient)->default_value("on"),
      "DenseNet shared concatenation buffers: on|off")(
      "bucket-mb", po::value(&bucket_mb)->default_value(25), "allreduce bucket size (mpirun)")(
      "overlap", po::value(&overlap)->default_value(true)->implicit_value(true),
      "allreduce buckets while backward runs (mpirun)");
  po::variables_map vm;
  if (!parse_command_line(args, options, &vm)) return 0;
  CONVNET_CHECK(batch > 0 && steps > 0 && warmup >= 0 && threads >= 0,
                "--batch-size and --steps must be > 0, --warmup and --threads >= 0");
  const ModelInfo& info = model_info(model);
  if (size == 0) size = info.default_image_size;
  if (classes == 0) classes = info.default_classes;

  layout = resolve_layout(layout, parse_backend(device), precision);
  auto communicator = make_communicator();
  Context context(
      context_options_for_rank(parse_backend(device), threads, precision, layout, *communicator));
  ParamStore store;
  auto net = build_model(context,
                         {.name = model,
                          .num_classes = classes,
                          .in_channels = channels,
                          .memory_efficient = parse_on_off("memory-efficient", memory_efficient),
                          .blocked_layout = runs_blocked(layout),
                          .channels_last = layout == "nhwc"},
                         store, Shape{batch, channels, size, size});
  CpuAllocator host_memory;
  ParamStore host_store;  // initialized on the host, copied to the device
  host_store.mirror(store, host_memory);
  initialize_parameters(host_store, 0);
  copy_values(store, host_store);
  auto loss = SoftmaxCrossEntropy::create(context, "loss", {}, net->output().shape());
  Sgd sgd(context, {.momentum = 0.9, .weight_decay = 1e-4}, store.decay_segments(false),
          store.flat_size());

  auto gradients = make_gradient_communicator(*communicator, context);
  GradientReducer reducer(
      *gradients, store.flat_grads().data<float>(), store.flat_size(),
      {.bucket_bytes = static_cast<std::size_t>(bucket_mb * (1 << 20)),
       .overlap = overlap,
       .overlap_first_step = context.backend() != Backend::cuda});  // as the trainer

  std::mt19937 rng(communicator->rank());
  std::normal_distribution<float> pixel(0.0f, 1.0f);
  Tensor images = Tensor::empty(net->input().shape(), host_memory);
  float* x = images.data<float>();
  for (int64_t i = 0; i < images.numel(); ++i) x[i] = pixel(rng);
  copy_from_host(net->input(), images.data<float>());
  std::vector<int64_t> labels(batch);
  for (auto& l : labels) l = std::uniform_int_distribution<int64_t>(0, classes - 1)(rng);

  const bool fp16 = precision == "fp16";
  constexpr float kLossScale = 1024.0f;  // synthetic data: any power of two
  // The timed steps run in up to 5 windows (one step each with --steps 5),
  // timed from an idle device to an idle device. Within a window the host
  // does not wait for the GPU, as in the trainer between log lines: its
  // metrics are read at the window's end.
  const int windows = std::min(steps, 5);
  std::vector<int> window_end;  // the step after each window (warmup excluded)
  for (int w = 1; w <= windows; ++w) window_end.push_back(warmup + w * steps / windows);
  std::vector<double> seconds, exposed;  // per step: the window's mean, and exposed comm
  auto window_start = std::chrono::steady_clock::now();
  int window_first = warmup;
  for (int step = 0; step < warmup + steps; ++step) {
    if (step <= warmup) {  // untimed, or the first window starts
      wait_for_device(context);
      window_start = std::chrono::steady_clock::now();
    }
    store.zero_grads();
    net->forward(Mode::training);
    loss->forward_accumulate(net->output(), labels);  // as the trainer: metrics stay put
    loss->backward(net->output_grad());
    if (fp16) scale_in_place(net->output_grad(), kLossScale);
    reducer.begin_step();
    net->backward([&](int64_t ready) { reducer.mark_ready(static_cast<std::size_t>(ready)); });
    reducer.finish();
    // fp16: the trainer's overflow test and unscaled update (the step is
    // applied either way here, so every timed step does the same work);
    // the trainer reads fp16 metrics every step.
    if (fp16) {
      loss->take_metrics();
      all_finite(context, store.flat_grads());
    }
    sgd.step(store.flat_params(), store.flat_grads(), 0.1, fp16 ? 1.0 / kLossScale : 1.0);
    if (step < warmup) continue;
    exposed.push_back(reducer.last_step().exposed_s);
    if (std::find(window_end.begin(), window_end.end(), step + 1) == window_end.end()) continue;
    loss->take_metrics();  // a log line's read
    wait_for_device(context);
    const auto end = std::chrono::steady_clock::now();
    const int window_steps = step + 1 - window_first;
    const double per_step =
        std::chrono::duration<double>(end - window_start).count() / window_steps;
    seconds.insert(seconds.end(), window_steps, per_step);
    window_first = step + 1;
    window_start = end;
  }
  std::sort(seconds.begin(), seconds.end());
  std::sort(exposed.begin(), exposed.end());
  const double median = seconds[seconds.size() / 2];
  if (communicator->rank() != 0) return 0;
  const int world = communicator->size();
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  std::printf(
      "{\"model\": \"%s\", \"batch_size\": %ld, \"image_size\": %ld, \"img_per_s\": %.3f, "
      "\"peak_rss_mib\": %ld, \"params\": %ld, \"threads\": %d, \"memory_efficient\": %s, "
      "\"activation_mib\": %ld, \"pool_mib\": %ld, \"allocated_peak_mib\": %ld, \"ranks\": %d, "
      "\"buckets\": %ld, \"exposed_comm_ms\": %.2f, \"device\": \"%s\", \"precision\": \"%s\", "
      "\"layout\": \"%s\", \"device_used_mib\": %ld}\n",
      model.c_str(), static_cast<long>(batch), static_cast<long>(size), world * batch / median,
      static_cast<long>(usage.ru_maxrss / 1024), static_cast<long>(store.num_parameters()),
      context.num_threads(), memory_efficient == "on" ? "true" : "false",
      static_cast<long>(net->activation_bytes() >> 20), static_cast<long>(net->pool_bytes() >> 20),
      static_cast<long>(context.allocator().peak_bytes_in_use() >> 20), world,
      static_cast<long>(reducer.buckets().size()), 1e3 * exposed[exposed.size() / 2],
      device.c_str(), precision.c_str(), layout.c_str(), device_used_mib(context));
  return 0;
}

}  // namespace convnet
