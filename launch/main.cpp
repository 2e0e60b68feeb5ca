// convnet: the command-line entry point. Subcommands are added by the trainer,
// dataset and checkpoint code; this file only dispatches.
#include <cstdio>
#include <cstring>
#include <string>

#include "core/context.h"
#include "core/error.h"

namespace {

void print_usage() {
  std::printf(
      "usage: convnet COMMAND [OPTIONS]\n\n"
      "commands:\n"
      "  version    print the version and the backends this build has\n\n"
      "Run 'convnet COMMAND --help' for a command's options.\n");
}

int print_version() {
  std::printf("convnet %s\nbackends: cpu (oneDNN)%s\n", CONVNET_VERSION,
#ifdef CONVNET_HAVE_CUDA
              ", cuda (built; cuDNN layers pending)"
#else
              ""
#endif
  );
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    print_usage();
    return argc < 2 ? 2 : 0;
  }
  const std::string command = argv[1];
  try {
    if (command == "version" || command == "--version") return print_version();
    std::fprintf(stderr, "convnet: unknown command '%s'\n", command.c_str());
    print_usage();
    return 2;
  } catch (const convnet::Error& e) {
    std::fprintf(stderr, "convnet: error: %s\n", e.what());
    return 1;
  }
}
