// convnet models: every model with its parameter count and default input size.
#include <boost/program_options.hpp>
#include <cstdio>

#include "launch/commands.h"
#include "launch/option_table.h"
#include "models/zoo.h"

namespace convnet {

int models_command(const std::vector<std::string>& args) {
  namespace po = boost::program_options;
  po::options_description options("convnet models [OPTIONS]: list every model");
  int64_t classes = 0, channels = 3;
  options.add_options()("help,h", "show this help")(
      "num-classes", po::value<int64_t>(&classes)->default_value(0),
      "classes of the classifier (0: the model's default, 1000 ImageNet / 10 CIFAR)")(
      "in-channels", po::value<int64_t>(&channels)->default_value(3), "input channels");
  po::variables_map vm;
  if (!parse_command_line(args, options, &vm)) return 0;
  Context context({.num_threads = 1});
  std::printf("%-22s %-14s %14s  %-12s %s\n", "model", "family", "parameters", "input", "smallest");
  for (const ModelInfo& info : model_zoo()) {
    ParamStore store;
    const int64_t s = info.default_image_size;
    build_model(context, {.name = info.name, .num_classes = classes, .in_channels = channels},
                store, Shape{1, channels, s, s});
    const std::string input =
        std::to_string(channels) + "x" + std::to_string(s) + "x" + std::to_string(s);
    const std::string smallest =
        std::to_string(info.min_image_size) + "x" + std::to_string(info.min_image_size);
    std::printf("%-22s %-14s %14ld  %-12s %s\n", info.name.c_str(), info.family.c_str(),
                static_cast<long>(store.num_parameters()), input.c_str(), smallest.c_str());
  }
  return 0;
}

}  // namespace convnet
