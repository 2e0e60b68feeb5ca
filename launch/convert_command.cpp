// convnet convert KIND ...: converts datasets to convnet's HDF5 layouts
// (docs/formats.md). KIND idx: MNIST / Fashion-MNIST IDX files; cifar10 /
// cifar100: the binary batches; imagefolder: a class-per-directory tree.
#include <unistd.h>

#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <sstream>

#include "core/error.h"
#include "datasets/converters.h"
#include "datasets/idx.h"
#include "datasets/raw_dataset.h"
#include "launch/commands.h"
#include "launch/option_table.h"
#include "launch/progress_line.h"
#include "trainer/progress.h"

namespace convnet {
namespace {

std::vector<std::string> split_names(const std::string& text) {
  std::vector<std::string> names;
  std::stringstream in(text);
  for (std::string name; std::getline(in, name, ',');) names.push_back(name);
  return names;
}

void print_summary(const std::string& output, const ConvertSummary& summary) {
  const DatasetInfo& info = summary.info;
  std::printf("%s\n",
              JsonLine()
                  .add("output", output)
                  .add("layout", layout_name(info.layout))
                  .add("count", info.count)
                  .add("shape", std::vector<int64_t>{info.height, info.width, info.channels})
                  .add("classes", info.num_classes)
                  .add("skipped", summary.skipped)
                  .str()
                  .c_str());
}

int convert_cifar_command(int num_classes, const std::vector<std::string>& args) {
  namespace po = boost::program_options;
  std::string input, output, split;
  bool compress = false;
  po::options_description options("convnet convert cifar" + std::to_string(num_classes) +
                                  " [OPTIONS]: CIFAR binary batches to the raw layout");
  options.add_options()("help,h", "show this help")(
      "input", po::value(&input)->required(), "folder holding the binary batches (or its parent)")(
      "output", po::value(&output)->required(), "HDF5 file to write")(
      "split", po::value(&split)->default_value("train"), "train or test")(
      "compress", po::bool_switch(&compress), "deflate-compress /images");
  po::variables_map vm;
  if (!parse_command_line(args, options, &vm)) return 0;
  ProgressLine progress(0);
  const ConvertSummary summary =
      convert_cifar(input, num_classes, split, output, compress,
                    [&](int64_t done, int64_t total) { progress.update(done, total); });
  print_summary(output, summary);
  return 0;
}

int convert_image_folder_command(const std::vector<std::string>& args) {
  namespace po = boost::program_options;
  std::string input, output, size;
  ImageFolderOptions folder;
  po::options_description options(
      "convnet convert imagefolder [OPTIONS]: a class-per-directory tree of JPEG/PNG files to "
      "the encoded layout (or the raw layout with --size)");
  options.add_options()("help,h", "show this help")("input", po::value(&input)->required(),
                                                    "root folder with one subfolder per class")(
      "output", po::value(&output)->required(), "HDF5 file to write")(
      "resize", po::value(&folder.resize)->default_value(0),
      "shrink the shorter side to this many pixels and re-encode as JPEG (0: store files as they "
      "are)")("size", po::value(&size)->default_value(""),
              "HxW: resize every image to exactly this size and write the raw layout")(
      "channels", po::value(&folder.channels)->default_value(3), "3 (RGB) or 1 (grayscale)")(
      "quality", po::value(&folder.quality)->default_value(90), "JPEG quality when re-encoding")(
      "jobs", po::value(&folder.jobs)->default_value(1), "decoding/encoding threads")(
      "skip-corrupt", po::bool_switch(&folder.skip_corrupt),
      "warn about and skip files that do not decode (default: stop with an error)")(
      "compress", po::bool_switch(&folder.compress), "deflate-compress /images (raw layout)");
  po::variables_map vm;
  if (!parse_command_line(args, options, &vm)) return 0;
  if (!size.empty()) {
    long h = 0, w = 0;
    char x = 0, extra = 0;
    CONVNET_CHECK(std::sscanf(size.c_str(), "%ld%c%ld%c", &h, &x, &w, &extra) == 3 && x == 'x' &&
                      h > 0 && w > 0,
                  "--size must be HxW (e.g. 64x64), got '", size, "'");
    folder.height = h;
    folder.width = w;
  }
  ProgressLine progress(0);
  const ConvertSummary summary = convert_image_folder(
      input, output, folder, [&](int64_t done, int64_t total) { progress.update(done, total); });
  print_summary(output, summary);
  return 0;
}

int convert_idx(const std::vector<std::string>& args) {
  namespace po = boost::program_options;
  std::string images_path, labels_path, output, class_names;
  bool compress = false;
  po::options_description options(
      "convnet convert idx [OPTIONS]: IDX images and labels (gzipped or not) to the raw layout");
  options.add_options()("help,h", "show this help")("images", po::value(&images_path)->required(),
                                                    "IDX file of uint8 images (N, H, W)")(
      "labels", po::value(&labels_path)->required(), "IDX file of uint8 labels (N)")(
      "output", po::value(&output)->required(), "HDF5 file to write")(
      "class-names", po::value(&class_names)->default_value(""),
      "comma-separated class names (default: 0, 1, ... up to the largest label)")(
      "compress", po::bool_switch(&compress), "deflate-compress /images");
  po::variables_map vm;
  if (!parse_command_line(args, options, &vm)) return 0;

  IdxReader labels_file(labels_path);
  CONVNET_CHECK(labels_file.dims().size() == 1, labels_path, ": labels must be (N), got rank ",
                labels_file.dims().size());
  std::vector<uint8_t> raw_labels(labels_file.count());
  labels_file.read(labels_file.count(), raw_labels.data());
  std::vector<int64_t> labels(raw_labels.begin(), raw_labels.end());

  IdxReader images(images_path);
  CONVNET_CHECK(images.dims().size() == 3, images_path, ": images must be (N, H, W), got rank ",
                images.dims().size());
  CONVNET_CHECK(images.count() == labels_file.count(), images_path, " holds ", images.count(),
                " images but ", labels_path, " holds ", labels_file.count(), " labels");

  DatasetInfo info;
  info.count = images.count();
  info.height = images.dims()[1];
  info.width = images.dims()[2];
  info.channels = 1;
  info.class_names = split_names(class_names);
  int64_t largest = 0;
  for (int64_t l : labels) largest = std::max(largest, l);
  if (info.class_names.empty())
    for (int64_t k = 0; k <= largest; ++k) info.class_names.push_back(std::to_string(k));
  info.num_classes = static_cast<int64_t>(info.class_names.size());
  info.source = "idx: " + images_path + ", " + labels_path;
  info.compress = compress;

  RawDatasetWriter writer(output, info);
  ProgressLine progress(info.count);
  constexpr int64_t kBatch = 1024;
  std::vector<uint8_t> buffer(kBatch * images.item_bytes());
  for (int64_t done = 0; done < info.count;) {
    const int64_t n = std::min(kBatch, info.count - done);
    images.read(n, buffer.data());
    writer.append(buffer.data(), labels.data() + done, n);
    done += n;
    progress.update(done);
  }
  images.expect_end();
  labels_file.expect_end();
  writer.finish();
  print_summary(output, ConvertSummary{info, 0});
  return 0;
}

}  // namespace

int convert_command(const std::vector<std::string>& args) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::printf(
        "usage: convnet convert KIND [OPTIONS]\n\nkinds:\n"
        "  idx          MNIST / Fashion-MNIST IDX files (gzipped or not)\n"
        "  cifar10      CIFAR-10 binary batches\n"
        "  cifar100     CIFAR-100 binary batches (fine labels)\n"
        "  imagefolder  class-per-directory JPEG/PNG tree (ImageNet layout)\n"
        "\n`convnet convert KIND --help` lists a kind's options.\n");
    return args.empty() ? 2 : 0;
  }
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  if (args[0] == "idx") return convert_idx(rest);
  if (args[0] == "cifar10") return convert_cifar_command(10, rest);
  if (args[0] == "cifar100") return convert_cifar_command(100, rest);
  if (args[0] == "imagefolder") return convert_image_folder_command(rest);
  throw Error("unknown dataset kind '" + args[0] + "' (idx, cifar10, cifar100, imagefolder)");
}

}  // namespace convnet
