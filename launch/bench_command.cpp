// convnet bench: training-step throughput of one model on synthetic data,
// one JSON line out. Every step is the trainer's own (trainer/train_step.h:
// input feed, forward, loss, backward with overlapping gradient buckets,
// SGD, fp16 loss scaling), so the figure is what training runs.
// Under mpirun it runs data-parallel and rank 0 reports the global images/s
// and the communication time backward did not hide. With --device cuda each
// rank drives the GPU of its local rank; steps are timed in windows from an
// idle GPU to an idle GPU, with metrics read only at a window's end (as the
// trainer between log lines).
#include <sys/resource.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <random>

#include "comm/device_selection.h"
#include "comm/gradient_reducer.h"
#include "comm/mpi_communicator.h"
#include "launch/commands.h"
#include "launch/option_table.h"
#include "models/zoo.h"
#include "trainer/progress.h"
#include "trainer/train_step.h"

namespace convnet {

namespace {

struct BenchOptions {
  std::string model;
  bool memory_efficient = true;
  Backend device = Backend::cpu;
  Precision precision = Precision::fp32;
  std::optional<Layout> layout;  // auto
  int64_t batch = 16, size = 0, channels = 3, classes = 0;
  int steps = 5, threads = 0, warmup = 1;
  double bucket_mb = 25;
  bool overlap = true;
};

boost::program_options::options_description bench_options(BenchOptions& o) {
  namespace po = boost::program_options;
  po::options_description options("convnet bench [OPTIONS]: training-step throughput");
  options.add_options()("help,h", "show this help")("model", po::value(&o.model)->required(),
                                                    "model name (see 'convnet models')")(
      "batch-size", po::value(&o.batch)->default_value(o.batch), "images per step")(
      "image-size", po::value(&o.size)->default_value(o.size),
      "input height and width (0: the model's default)")(
      "in-channels", po::value(&o.channels)->default_value(o.channels), "input channels")(
      "num-classes", po::value(&o.classes)->default_value(o.classes),
      "classes (0: the model's default)")("steps", po::value(&o.steps)->default_value(o.steps),
                                          "timed steps")(
      "warmup", po::value(&o.warmup)->default_value(o.warmup), "untimed steps first")(
      "threads", po::value(&o.threads)->default_value(o.threads),
      "CPU threads (0: OMP_NUM_THREADS or all)")(
      "device", po::value(&o.device)->default_value(o.device),
      "cpu, or cuda (the GPU of each rank's local rank)")(
      "layout", po::value(&o.layout)->default_value(o.layout),
      "activations: on the GPU nchw, nhwc or auto (nhwc for bf16/fp16, else nchw); on the "
      "CPU nchw, nchw8c, nchw16c, nhwc or auto (the layout the CPU's kernels prefer)")(
      "precision", po::value(&o.precision)->default_value(o.precision),
      "fp32 or bf16 (mixed precision; on the CPU with avx512_bf16 or AMX); on the GPU also "
      "tf32 or fp16")(
      "memory-efficient",
      po::value(&o.memory_efficient)->default_value(true, "on")->implicit_value(true, "on"),
      "DenseNet shared concatenation buffers (a switch, as in train: "
      "--memory-efficient off)")("bucket-mb", po::value(&o.bucket_mb)->default_value(o.bucket_mb),
                                 "allreduce bucket size (mpirun)")(
      "overlap", po::value(&o.overlap)->default_value(true, "on")->implicit_value(true, "on"),
      "allreduce buckets while backward runs (mpirun)");
  return options;
}

// One synthetic micro-batch (normal pixels, uniform labels), the same every step.
Batch synthetic_batch(const Tensor& input, int64_t classes, int rank) {
  std::mt19937 rng(rank);
  std::normal_distribution<float> pixel(0.0f, 1.0f);
  Batch batch;
  batch.count = input.shape()[0];
  batch.images.resize(static_cast<std::size_t>(input.numel()));
  for (float& x : batch.images) x = pixel(rng);
  batch.labels.resize(static_cast<std::size_t>(batch.count));
  for (auto& l : batch.labels) l = std::uniform_int_distribution<int64_t>(0, classes - 1)(rng);
  return batch;
}

// Seconds per timed step (each the mean of its window) and exposed
// communication per timed step.
struct StepTimes {
  std::vector<double> seconds, exposed;
};

// Runs warmup + steps training steps; the timed ones in up to 5 windows
// (one step each with --steps 5), timed from an idle device to an idle device.
StepTimes time_steps(TrainStep& train_step, Context& context, const BenchOptions& o) {
  const int windows = std::min(o.steps, 5), total = o.warmup + o.steps;
  std::vector<int> window_end;  // the step after each window (warmup excluded)
  for (int w = 1; w <= windows; ++w) window_end.push_back(o.warmup + w * o.steps / windows);
  const bool read_every_step = reads_metrics_every_step(std::nullopt, context.backend());
  StepTimes times;
  auto window_start = std::chrono::steady_clock::now();
  int window_first = o.warmup;
  for (int step = 0; step < total; ++step) {
    if (step <= o.warmup) {  // untimed, or the first window starts
      context.synchronize();
      window_start = std::chrono::steady_clock::now();
    }
    const bool ends_window =
        std::find(window_end.begin(), window_end.end(), step + 1) != window_end.end();
    const StepMetrics metrics = train_step.run({.step = step,
                                                .lr = 0.1,
                                                .read_metrics = read_every_step || ends_window,
                                                .last = step + 1 == total});
    if (step < o.warmup) continue;
    times.exposed.push_back(metrics.exposed_comm_s);
    if (!ends_window) continue;
    context.synchronize();
    const auto end = std::chrono::steady_clock::now();
    const int window_steps = step + 1 - window_first;
    const double per_step =
        std::chrono::duration<double>(end - window_start).count() / window_steps;
    times.seconds.insert(times.seconds.end(), window_steps, per_step);
    window_first = step + 1;
    window_start = end;
  }
  std::sort(times.seconds.begin(), times.seconds.end());
  std::sort(times.exposed.begin(), times.exposed.end());
  return times;
}

struct BenchRun {
  Context& context;
  ParamStore& store;
  Net& net;
  GradientReducer& reducer;
  int world;
  Layout layout;
};

void print_result(const BenchOptions& o, const BenchRun& run, const StepTimes& times) {
  const double median = times.seconds[times.seconds.size() / 2];
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const long device_used_mib = run.context.backend() == Backend::cuda
                                   ? static_cast<long>(run.context.device_bytes_in_use() >> 20)
                                   : -1;
  JsonLine line;
  line.add("model", o.model)
      .add("batch_size", o.batch)
      .add("image_size", o.size)
      .add("img_per_s", run.world * o.batch / median)
      .add("peak_rss_mib", int64_t(usage.ru_maxrss / 1024))
      .add("params", run.store.num_parameters())
      .add("threads", run.context.num_threads())
      .add("memory_efficient", o.memory_efficient)
      .add("activation_mib", run.net.activation_bytes() >> 20)
      .add("pool_mib", run.net.pool_bytes() >> 20)
      .add("allocated_peak_mib", run.context.allocator().peak_bytes_in_use() >> 20)
      .add("ranks", run.world)
      .add("buckets", int64_t(run.reducer.buckets().size()))
      .add("exposed_comm_ms", 1e3 * times.exposed[times.exposed.size() / 2])
      .add("device", name_of(o.device))
      .add("precision", name_of(o.precision))
      .add("layout", name_of(run.layout))
      .add("device_used_mib", device_used_mib);
  std::printf("%s\n", line.str().c_str());
}

}  // namespace

int bench_command(const std::vector<std::string>& args) {
  BenchOptions o;
  boost::program_options::variables_map vm;
  if (!parse_command_line(args, bench_options(o), &vm)) return 0;
  CONVNET_CHECK(o.batch > 0 && o.steps > 0 && o.warmup >= 0 && o.threads >= 0,
                "--batch-size and --steps must be > 0, --warmup and --threads >= 0");
  const ModelInfo& info = model_info(o.model);
  if (o.size == 0) o.size = info.default_image_size;
  if (o.classes == 0) o.classes = info.default_classes;
  const Layout layout = resolve_layout(o.layout, o.device, o.precision);

  auto communicator = make_communicator();
  Context context(
      context_options_for_rank(o.device, o.threads, o.precision, layout, *communicator));
  ParamStore store;
  auto net = build_model(context,
                         {.name = o.model,
                          .num_classes = o.classes,
                          .in_channels = o.channels,
                          .memory_efficient = o.memory_efficient,
                          .blocked_layout = is_blocked(layout),
                          .channels_last = layout == Layout::nhwc},
                         store, Shape{o.batch, o.channels, o.size, o.size});
  initialize_parameters(store, 0);
  auto loss = SoftmaxCrossEntropy::create(context, "loss", {}, net->output().shape());
  Sgd sgd(context, {.momentum = 0.9, .weight_decay = 1e-4},
          store.decay_segments(DecayScope::all_parameters), store.flat_size());
  auto gradients = make_gradient_communicator(*communicator, context);
  GradientReducer reducer(*gradients, store.flat_grads().data<float>(), store.flat_size(),
                          {.bucket_bytes = static_cast<std::size_t>(o.bucket_mb * (1 << 20)),
                           .overlap = o.overlap,
                           .overlap_first_step = context.backend() != Backend::cuda});
  LossScaler scaler(o.precision == Precision::fp16);
  const Batch batch = synthetic_batch(net->input(), o.classes, communicator->rank());
  TrainStep train_step({.context = context,
                        .net = *net,
                        .loss = *loss,
                        .store = store,
                        .sgd = sgd,
                        .reducer = reducer,
                        .communicator = *communicator,
                        .scaler = scaler,
                        .next_batch = [&batch](Batch* next) { *next = batch; }});
  const StepTimes times = time_steps(train_step, context, o);
  if (communicator->rank() == 0)
    print_result(o, {context, store, *net, reducer, communicator->size(), layout}, times);
  return 0;
}

}  // namespace convnet
