// convnet bench-data: loader throughput (decode + augmentation +
// normalization into float batches), images/s in total and per thread.
#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <memory>

#include "core/error.h"
#include "datasets/loader.h"
#include "launch/commands.h"
#include "launch/option_table.h"
#include "trainer/progress.h"

namespace convnet {

int bench_data_command(const std::vector<std::string>& args) {
  namespace po = boost::program_options;
  std::string data;
  Recipe recipe = Recipe::cifar;
  LoaderOptions options;
  int64_t batches = 0, warmup = 0;
  bool eval = false;
  po::options_description description(
      "convnet bench-data [OPTIONS]: loader images/s on a dataset, no training");
  description.add_options()("help,h", "show this help")(
      "data", po::value(&data)->required(), "dataset file(s): a path, a comma list or a glob")(
      "recipe", po::value(&recipe)->default_value(recipe), "augmentation: none, cifar, imagenet")(
      "eval", po::bool_switch(&eval), "the recipe's evaluation transform instead of training's")(
      "size", po::value(&options.augment.size)->default_value(0),
      "output size (imagenet: crop, default 224)")(
      "batch-size", po::value(&options.batch_size)->default_value(64), "images per batch")(
      "loader-threads", po::value(&options.threads)->default_value(1), "loader threads")(
      "batches", po::value(&batches)->default_value(50), "timed batches")(
      "warmup", po::value(&warmup)->default_value(2), "untimed batches first")(
      "seed", po::value(&options.augment.seed)->default_value(0), "augmentation seed");
  po::variables_map vm;
  if (!parse_command_line(args, description, &vm)) return 0;
  options.augment.recipe = recipe;
  options.augment.train = !eval;
  options.prefetch = 2 * options.threads;
  auto dataset = std::make_shared<Dataset>(data);
  Loader loader(dataset, options);
  Batch batch;
  for (int64_t i = 0; i < warmup; ++i) loader.next(&batch);
  const auto start = std::chrono::steady_clock::now();
  int64_t images = 0;
  for (int64_t i = 0; i < batches; ++i) {
    loader.next(&batch);
    images += batch.count;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double rate = images / seconds;
  std::printf("%s\n", JsonLine()
                          .add("data", data)
                          .add("layout", layout_name(dataset->info().layout))
                          .add("recipe", name_of(recipe))
                          .add("train", !eval)
                          .add("size", std::vector<int64_t>{loader.height(), loader.width()})
                          .add("threads", options.threads)
                          .add("img_per_s", rate)
                          .add("img_per_s_per_thread", rate / options.threads)
                          .str()
                          .c_str());
  return 0;
}

}  // namespace convnet
