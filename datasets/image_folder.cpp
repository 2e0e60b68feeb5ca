// imagefolder conversion: files are read, decoded (validated) and optionally
// resized/re-encoded by `jobs` threads a chunk at a time, then written in
// file order by this thread, so the output does not depend on `jobs`.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "core/error.h"
#include "datasets/converters.h"
#include "datasets/encoded_dataset.h"
#include "datasets/image.h"
#include "datasets/raw_dataset.h"

namespace convnet {
namespace {

namespace fs = std::filesystem;

struct Source {
  std::string path;
  int64_t label = 0;
};

struct Converted {
  std::vector<uint8_t> bytes;  // encoded layout: what gets stored
  Image image;                 // decoded (and resized) pixels
  std::string error;           // non-empty when the file could not be used
};

bool is_image_file(const fs::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png";
}

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DecodeError("cannot open");
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

Converted convert_one(const Source& source, const ImageFolderOptions& options) {
  Converted out;
  try {
    out.bytes = read_file(source.path);
    out.image = decode_image(out.bytes.data(), out.bytes.size(), options.channels);
    const Image& image = out.image;
    if (options.height > 0) {
      out.image = resize(image, {0, 0, double(image.height), double(image.width)}, options.height,
                         options.width);
      out.bytes.clear();
    } else if (options.resize > 0 && std::min(image.height, image.width) > options.resize) {
      // Shrink only: enlarging would store bigger files with no information.
      const double scale = double(options.resize) / std::min(image.height, image.width);
      const int64_t h = std::max<int64_t>(1, std::lround(image.height * scale));
      const int64_t w = std::max<int64_t>(1, std::lround(image.width * scale));
      out.image = resize(image, {0, 0, double(image.height), double(image.width)}, h, w);
      out.bytes = encode_jpeg(out.image, options.quality);
    }
  } catch (const std::exception& e) {
    out.error = e.what();
  }
  return out;
}

}  // namespace

ConvertSummary convert_image_folder(const std::string& input, const std::string& output,
                                    const ImageFolderOptions& options,
                                    const ConvertProgress& progress) {
  CONVNET_CHECK(fs::is_directory(input), input, ": not a directory");
  CONVNET_CHECK(options.channels == 1 || options.channels == 3, "--channels must be 1 or 3");
  CONVNET_CHECK((options.height > 0) == (options.width > 0), "--size needs a height and a width");
  CONVNET_CHECK(options.height == 0 || options.resize == 0,
                "--size and --resize exclude each other");
  CONVNET_CHECK(options.quality >= 1 && options.quality <= 100, "--quality must lie in 1..100");
  CONVNET_CHECK(options.jobs >= 1, "--jobs must be positive");

  ConvertSummary summary;
  DatasetInfo& info = summary.info;
  std::vector<std::string> classes;
  for (const auto& entry : fs::directory_iterator(input))
    if (entry.is_directory()) classes.push_back(entry.path().filename().string());
  std::sort(classes.begin(), classes.end());
  CONVNET_CHECK(!classes.empty(), input, ": no class subdirectories");
  std::vector<Source> sources;
  for (std::size_t label = 0; label < classes.size(); ++label) {
    std::vector<std::string> files;
    for (const auto& entry : fs::recursive_directory_iterator(input + "/" + classes[label]))
      if (entry.is_regular_file() && is_image_file(entry.path())) files.push_back(entry.path());
    std::sort(files.begin(), files.end());
    for (std::string& file : files) sources.push_back({std::move(file), int64_t(label)});
  }
  CONVNET_CHECK(!sources.empty(), input, ": no .jpg/.jpeg/.png files in the class directories");

  info.layout = options.height > 0 ? DatasetLayout::raw : DatasetLayout::encoded;
  info.count = 0;  // known at the end (corrupt files may be skipped)
  info.height = options.height;
  info.width = options.width;
  info.channels = options.channels;
  info.num_classes = static_cast<int64_t>(classes.size());
  info.class_names = classes;
  info.source = "imagefolder: " + input;
  info.compress = options.compress;
  std::unique_ptr<RawDatasetWriter> raw;
  std::unique_ptr<EncodedDatasetWriter> encoded;
  if (info.layout == DatasetLayout::raw)
    raw = std::make_unique<RawDatasetWriter>(output, info);
  else
    encoded = std::make_unique<EncodedDatasetWriter>(output, info);

  const int64_t total = static_cast<int64_t>(sources.size());
  const int64_t chunk = 64 * options.jobs;
  std::vector<Converted> results(chunk);
  for (int64_t begin = 0; begin < total; begin += chunk) {
    const int64_t n = std::min(chunk, total - begin);
    std::vector<std::thread> workers;
    for (int j = 0; j < options.jobs; ++j)
      workers.emplace_back([&, j] {
        for (int64_t i = j; i < n; i += options.jobs)
          results[i] = convert_one(sources[begin + i], options);
      });
    for (std::thread& t : workers) t.join();
    std::vector<uint8_t> raw_pixels;
    std::vector<int64_t> raw_labels;
    for (int64_t i = 0; i < n; ++i) {
      const Source& source = sources[begin + i];
      Converted& result = results[i];
      if (!result.error.empty()) {
        CONVNET_CHECK(options.skip_corrupt, source.path, ": ", result.error,
                      " (--skip-corrupt skips such files)");
        std::fprintf(stderr, "warning: skipping %s: %s\n", source.path.c_str(),
                     result.error.c_str());
        ++summary.skipped;
        continue;
      }
      if (raw) {
        raw_pixels.insert(raw_pixels.end(), result.image.pixels.begin(), result.image.pixels.end());
        raw_labels.push_back(source.label);
      } else {
        encoded->append(result.bytes, source.label, result.image);
      }
      result = Converted();
    }
    if (raw) raw->append(raw_pixels.data(), raw_labels.data(), int64_t(raw_labels.size()));
    if (progress) progress(begin + n, total);
  }
  if (raw) {
    info.count = raw->written();
    raw->finish();
  } else {
    info.count = encoded->written();
    encoded->finish();
  }
  return summary;
}

}  // namespace convnet
