// CIFAR binary batches: each record is the label byte(s) then 3072 bytes of
// a 32x32 image, red plane, green plane, blue plane (row-major).
#include <sys/stat.h>

#include <fstream>

#include "core/error.h"
#include "datasets/converters.h"
#include "datasets/raw_dataset.h"

namespace convnet {
namespace {

bool is_file(const std::string& path) {
  struct stat info;
  return stat(path.c_str(), &info) == 0 && S_ISREG(info.st_mode);
}

std::vector<std::string> read_lines(const std::string& path) {
  std::vector<std::string> lines;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (!line.empty()) lines.push_back(line);
  }
  return lines;
}

}  // namespace

ConvertSummary convert_cifar(const std::string& input, int num_classes, const std::string& split,
                             const std::string& output, bool compress,
                             const ConvertProgress& progress) {
  CONVNET_CHECK(num_classes == 10 || num_classes == 100, "CIFAR has 10 or 100 classes");
  CONVNET_CHECK(split == "train" || split == "test", "--split must be train or test, got '", split,
                "'");
  const bool hundred = num_classes == 100;
  const std::string first = hundred ? "train.bin" : "data_batch_1.bin";
  std::string dir = input;
  if (!is_file(dir + "/" + first))
    dir = input + (hundred ? "/cifar-100-binary" : "/cifar-10-batches-bin");
  CONVNET_CHECK(is_file(dir + "/" + first), input, ": no ", first,
                " here or in its cifar-10-batches-bin / cifar-100-binary folder");
  std::vector<std::string> files;
  if (hundred)
    files = {dir + (split == "train" ? "/train.bin" : "/test.bin")};
  else if (split == "test")
    files = {dir + "/test_batch.bin"};
  else
    for (int i = 1; i <= 5; ++i) files.push_back(dir + "/data_batch_" + std::to_string(i) + ".bin");

  const int64_t label_bytes = hundred ? 2 : 1, image_bytes = 3 * 32 * 32;
  const int64_t record = label_bytes + image_bytes;
  int64_t total = 0;
  for (const std::string& file : files) {
    struct stat info;
    CONVNET_CHECK(stat(file.c_str(), &info) == 0, file, ": missing");
    CONVNET_CHECK(info.st_size > 0 && info.st_size % record == 0, file, ": ", info.st_size,
                  " bytes is not a whole number of ", record, "-byte CIFAR records (truncated?)");
    total += info.st_size / record;
  }

  ConvertSummary summary;
  DatasetInfo& info = summary.info;
  info.count = total;
  info.height = info.width = 32;
  info.channels = 3;
  info.num_classes = num_classes;
  info.class_names = read_lines(dir + (hundred ? "/fine_label_names.txt" : "/batches.meta.txt"));
  if (static_cast<int64_t>(info.class_names.size()) != num_classes) {
    info.class_names.clear();
    for (int k = 0; k < num_classes; ++k) info.class_names.push_back(std::to_string(k));
  }
  info.source = std::string(hundred ? "cifar100" : "cifar10") + " " + split + ": " + dir;
  info.compress = compress;

  RawDatasetWriter writer(output, info);
  constexpr int64_t kBatch = 1000;
  std::vector<uint8_t> records(kBatch * record), images(kBatch * image_bytes);
  std::vector<int64_t> labels(kBatch);
  for (const std::string& file : files) {
    std::ifstream in(file, std::ios::binary);
    CONVNET_CHECK(in.good(), file, ": cannot open");
    for (;;) {
      in.read(reinterpret_cast<char*>(records.data()), records.size());
      const int64_t n = in.gcount() / record;
      if (n == 0) break;
      for (int64_t i = 0; i < n; ++i) {
        const uint8_t* r = &records[i * record];
        labels[i] = r[label_bytes - 1];  // CIFAR-100: (coarse, fine), fine is used
        const uint8_t* planes = r + label_bytes;
        uint8_t* hwc = &images[i * image_bytes];
        for (int64_t p = 0; p < 1024; ++p)
          for (int64_t k = 0; k < 3; ++k) hwc[p * 3 + k] = planes[k * 1024 + p];
        CONVNET_CHECK(labels[i] < num_classes, file, ": record ", writer.written() + i,
                      " has label ", labels[i], " outside [0, ", num_classes, ")");
      }
      writer.append(images.data(), labels.data(), n);
      if (progress) progress(writer.written(), total);
    }
  }
  writer.finish();
  return summary;
}

}  // namespace convnet
