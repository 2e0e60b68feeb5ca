// convnet train: data-parallel training (trainer/trainer.h) from the command
// line and/or an INI file (--config FILE; the command line wins).
#include <boost/program_options.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "launch/collective_command.h"
#include "launch/commands.h"
#include "launch/option_table.h"
#include "trainer/progress.h"
#include "trainer/stop_signals.h"
#include "trainer/trainer.h"

namespace convnet {

namespace {

// Model, data and optimization options.
void add_training_options(OptionTable& table, TrainConfig& c) {
  table.add("model", &c.model, "model name (see 'convnet models')")
      .add("train-data", &c.train_data, "training dataset: HDF5 file, comma list or glob")
      .add("val-data", &c.val_data, "validation dataset, evaluated after every epoch (optional)")
      .add("in-channels", &c.in_channels, "input channels (0: the dataset's)")
      .add("num-classes", &c.num_classes, "classes (0: the dataset's)")
      .add(
          "recipe", &c.recipe,
          "augmentation: none, cifar (pad-4 crop + flip), imagenet (random-resized crop + flip); "
          "auto: imagenet for encoded data, cifar for raw images from 8x8 to 64x64, none otherwise")
      .add("crop", &c.crop, "imagenet recipe: crop size (0: 224)")
      .add("mixup-alpha", &c.mixup_alpha,
           "mixup (Zhang et al.): mix each micro-batch with its reverse, lambda ~ Beta(a, a) "
           "(0: off)")
      .add("cutmix-alpha", &c.cutmix_alpha,
           "CutMix (Yun et al.): paste a box of the reversed micro-batch, lambda ~ Beta(a, a) "
           "(0: off)")
      .add("mix-prob", &c.mix_prob, "probability that a micro-batch is mixed (timm's mixup_prob)")
      .add("mix-switch-prob", &c.mix_switch_prob,
           "with both mixup and CutMix: probability of CutMix (timm's switch_prob)")
      .add("random-erase", &c.random_erase,
           "random erasing probability (Zhong et al.; torchvision's RandomErasing): a "
           "rectangle of 2-33% of the image set to the mean colour, in training")
      .add_switch("memory-efficient", &c.memory_efficient, "DenseNet shared concatenation buffers")
      .add_switch("skip-corrupt", &c.skip_corrupt,
                  "replace undecodable training images by the next sample (warned, counted)")
      .add("epochs", &c.epochs, "epochs")
      .add("batch-size", &c.batch_size, "images per rank and micro-batch")
      .add("accumulate", &c.accumulate, "micro-batches per rank and step (gradient accumulation)")
      .add("max-steps", &c.max_steps, "stop after this many steps (0: run all epochs)")
      .add("lr", &c.lr, "base learning rate")
      .add("lr-scaling", &c.lr_scaling, "none, or linear: lr x global batch / 256 (Goyal et al.)")
      .add("schedule", &c.schedule, "constant, step, multistep or cosine (per iteration)")
      .add("milestones", &c.milestones,
           "multistep: comma-separated epochs where lr *= gamma (default: 50% and 75% of --epochs)")
      .add("step-size", &c.step_size, "step: epochs between lr *= gamma")
      .add("gamma", &c.gamma, "lr decay factor of step/multistep")
      .add("warmup-epochs", &c.warmup_epochs, "linear warmup from 0 over this many epochs")
      .add("lr-min", &c.lr_min, "cosine: the learning rate it ends at (not scaled)")
      .add("momentum", &c.momentum, "SGD momentum")
      .add_switch("nesterov", &c.nesterov, "Nesterov momentum")
      .add("weight-decay", &c.weight_decay, "L2 weight decay")
      .add_switch("no-bn-decay", &c.no_bn_decay, "no weight decay on BN parameters and biases")
      .add("label-smoothing", &c.label_smoothing, "label smoothing in [0, 1)")
      .add("clip-grad-norm", &c.clip_grad_norm,
           "scale the averaged gradients down to this L2 norm when above it (0: off; CPU)")
      .add("bn-momentum", &c.bn_momentum,
           "BatchNorm momentum in (0, 1]: the weight of each step's batch statistics in the "
           "running ones (PyTorch's convention)")
      .add("drop-path", &c.drop_path,
           "stochastic depth in [0, 1): residual blocks dropped per step with a probability "
           "growing linearly to this at the last block (kept ones scaled by 1/(1-p))")
      .add("seed", &c.seed, "seed of initialization, data order and augmentation")
      .add("init-weights", &c.init_weights,
           "fine-tune: start from this weights file or checkpoint (weights and BN statistics; "
           "a classifier for another class count is re-initialized); a resumed checkpoint wins")
      .add_switch("model-ema", &c.model_ema,
                  "keep an exponential moving average of the weights and BN statistics: "
                  "evaluated beside them (eval_ema records), checkpointed, saved as "
                  "model_ema.h5")
      .add("model-ema-decay", &c.model_ema_decay, "--model-ema: the average's decay per step")
      .add_switch("model-ema-warmup", &c.model_ema_warmup,
                  "--model-ema: decay min(decay, (1 + n) / (10 + n)) after n updates, as timm")
      .add_switch("adapt-stem", &c.adapt_stem,
                  "--init-weights from images with other channels: sum (1 channel) or repeat "
                  "the stem's filters, as torchvision and timm do");
}

// Where the run goes, what it runs on, checkpoints and resume.
void add_system_options(OptionTable& table, TrainConfig& c) {
  table.add("run-dir", &c.run_dir, "directory for config.ini, metrics.jsonl and model.h5")
      .add("device", &c.device, "cpu, or cuda (each rank drives the GPU of its local rank)")
      .add("precision", &c.precision,
           "fp32, or bf16 (mixed precision, f32 master weights; on the CPU where it has "
           "avx512_bf16 or AMX); on the GPU also tf32 (TF32 tensor-core convolutions) or fp16 "
           "(mixed precision with dynamic loss scaling)")
      .add("layout", &c.layout,
           "activations: on the GPU nchw or nhwc (channels-last; ResNet families), auto: nhwc "
           "for bf16/fp16, else nchw; on the CPU nchw (plain), nchw8c or nchw16c (blocked, "
           "where the family supports it) or nhwc (ResNet families), auto: the layout the "
           "CPU's kernels prefer (nchw16c with AVX-512, nchw8c with AVX2; for bf16 nhwc with "
           "AMX)")
      .add("threads", &c.threads, "compute threads per rank (0: cores / ranks on the node)")
      .add("loader-threads", &c.loader_threads, "data loader threads per rank")
      .add("bucket-mb", &c.bucket_mb, "gradient allreduce bucket size, MiB")
      .add_switch("overlap", &c.overlap, "allreduce gradient buckets while backward runs")
      .add("comm-timeout", &c.comm_timeout,
           "seconds a rank may wait for the others (a rank that stopped answering) before the "
           "job ends with an error (positive)")
      .add("log-every", &c.log_every, "steps between log lines and metrics records")
      .add_switch("tensorboard", &c.tensorboard,
                  "write TensorBoard event files in --run-dir as training goes (off: none)")
      .add("read-metrics", &c.read_metrics,
           "when loss and accuracy are read back: step (a non-finite loss stops the run before "
           "the update), log (only at log lines, epoch ends, checkpoints and stops: no host wait "
           "in a GPU step), or auto (log on the GPU except fp16, else step)")
      .add("eval-batch-size", &c.eval_batch_size, "evaluation batch per rank (0: --batch-size)")
      .add("checkpoint-every", &c.checkpoint_every,
           "checkpoint interval: N or Nepochs, or Nsteps (also at the end and on a stop signal)")
      .add("keep", &c.keep, "checkpoints kept in the run directory (plus the best by val top-1)")
      .add("resume", &c.resume,
           "auto: continue from the newest intact checkpoint in --run-dir (fresh start if none); "
           "or a checkpoint file")
      .add_switch("allow-changed-micro-batch", &c.allow_changed_micro_batch,
                  "resume even when --batch-size or the rank count changes the micro-batch");
}

// Parses the command line and --config into the table's targets; false for --help.
bool parse_train_options(const std::vector<std::string>& args, OptionTable& table) {
  namespace po = boost::program_options;
  std::string config_file;
  po::options_description extra;
  extra.add_options()("help,h", "show this help")("config", po::value(&config_file),
                                                  "INI file with the options above (name = value)");
  po::options_description all;
  all.add(table.description()).add(extra);
  po::variables_map vm;
  po::store(parse_options(args, all), vm);
  if (vm.count("help")) {
    std::cout << all;
    return false;
  }
  if (vm.count("config")) {
    const std::string path = vm["config"].as<std::string>();
    CONVNET_CHECK(!std::filesystem::is_directory(path), "--config ", path,
                  " is a directory; it names an INI file (name = value lines)");
    CONVNET_CHECK(!std::filesystem::exists(path) || std::filesystem::is_regular_file(path),
                  "--config ", path,
                  " is not a regular file (a FIFO or device); it names an INI file");
    std::ifstream in(path);
    CONVNET_CHECK(in.good(), "--config ", path, ": cannot read");
    try {
      po::store(po::parse_config_file(in, table.description()), vm);  // command line kept
    } catch (const po::error& e) {
      throw Error("--config " + path + ": " + e.what());
    }
  }
  po::notify(vm);
  return true;
}

}  // namespace

int train_command(const std::vector<std::string>& args) {
  // First of all: a stop request during start-up (reading data, building the
  // net, connecting ranks) is kept and honoured after the first step.
  const StopSignals early_signals;
  TrainConfig c;
  OptionTable table("convnet train [OPTIONS] (also under mpirun / srun: one replica per rank)");
  add_training_options(table, c);
  add_system_options(table, c);
  if (!parse_train_options(args, table)) return 0;
  CONVNET_CHECK(!c.model.empty(), "--model is required (see 'convnet models')");
  CONVNET_CHECK(!c.train_data.empty(), "--train-data is required");

  return run_collective("train", [&](Communicator& communicator) {
    const TrainResult result = train(c, table.ini(), communicator);
    if (result.stopped_early) return kExitResumable;
    if (communicator.rank() == 0) {
      JsonLine line;
      line.add("steps", result.steps)
          .add("train_loss", result.train_loss)
          .add("train_top1", result.train_top1);
      if (result.evaluated)
        line.add("val_loss", result.val_loss)
            .add("val_top1", result.val_top1)
            .add("val_top5", result.val_top5);
      line.add("model", result.model_path);
      std::printf("%s\n", line.str().c_str());
    }
    return 0;
  });
}

}  // namespace convnet
