// convnet: the command-line entry point; dispatches to the subcommands.
#include <hdf5.h>

#include <boost/program_options/errors.hpp>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "launch/commands.h"

namespace {

void print_usage() {
  std::printf(
      "usage: convnet COMMAND [OPTIONS]\n\n"
      "commands:\n"
      "  bench      training-step throughput of a model on synthetic data\n"
      "  bench-data loader images/s (decode + augmentation) on a dataset\n"
      "  convert    convert a dataset to convnet's HDF5 layout (idx, cifar10/100, imagefolder)\n"
      "  eval       top-1/top-5/loss of a model file on a dataset (also under mpirun)\n"
      "  inspect    a checkpoint's, weights file's or dataset's metadata as JSON\n"
      "  models     list every model with its parameter count and input size\n"
      "  predict    write a model's logits for a dataset to HDF5 (also under mpirun)\n"
      "  train      train a model, data-parallel under mpirun / srun\n"
      "  version    print the version and the backends this build has\n\n"
      "Run 'convnet COMMAND --help' for a command's options.\n");
}

int print_version() {
  std::printf("convnet %s\nbackends: cpu (oneDNN)%s\n", CONVNET_VERSION,
#ifdef CONVNET_HAVE_CUDA
              ", cuda (cuDNN, cuBLAS, NCCL; --device cuda)"
#else
              ""
#endif
  );
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // HDF5 closes what is still open when the process exits; a file whose
  // close already failed (a full disk) crashes it there (H5F__close_cb).
  // convnet closes every file it opens itself, so HDF5's exit handler has
  // nothing to do but that crash: turn it off.
  H5dont_atexit();
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    print_usage();
    return argc < 2 ? 2 : 0;
  }
  const std::string command = argv[1];
  const std::vector<std::string> args(argv + 2, argv + argc);
  try {
    if (command == "version" || command == "--version") return print_version();
    if (command == "models") return convnet::models_command(args);
    if (command == "bench") return convnet::bench_command(args);
    if (command == "train") return convnet::train_command(args);
    if (command == "eval") return convnet::eval_command(args);
    if (command == "predict") return convnet::predict_command(args);
    if (command == "inspect") return convnet::inspect_command(args);
    if (command == "bench-data") return convnet::bench_data_command(args);
    if (command == "convert") return convnet::convert_command(args);
    std::fprintf(stderr, "convnet: unknown command '%s'\n", command.c_str());
    print_usage();
    return 2;
  } catch (const boost::program_options::error& e) {
    std::fprintf(stderr, "convnet %s: %s (see 'convnet %s --help')\n", command.c_str(), e.what(),
                 command.c_str());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "convnet: error: %s\n", e.what());
    return 1;
  }
}
