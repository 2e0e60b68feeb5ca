// Dataset converters behind `convnet convert` (docs/formats.md). Each streams
// its input, writes a temporary file and renames it when complete.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "datasets/dataset_file.h"

namespace convnet {

// Called after each written batch with (done, total); total may be an
// estimate (files found) when corrupt files are skipped.
using ConvertProgress = std::function<void(int64_t done, int64_t total)>;

struct ConvertSummary {
  DatasetInfo info;
  int64_t skipped = 0;  // corrupt inputs skipped (imagefolder --skip-corrupt)
};

// CIFAR-10 / CIFAR-100 binary version. `input` is the extracted folder
// (cifar-10-batches-bin or cifar-100-binary) or its parent. split "train":
// data_batch_1..5.bin (10) / train.bin (100); "test": test_batch.bin /
// test.bin. CIFAR-100 labels are the 100 fine labels.
ConvertSummary convert_cifar(const std::string& input, int num_classes, const std::string& split,
                             const std::string& output, bool compress,
                             const ConvertProgress& progress);

struct ImageFolderOptions {
  int64_t resize = 0;             // encoded: shrink the shorter side to this and re-encode
  int64_t height = 0, width = 0;  // > 0: raw layout at exactly this size
  int64_t channels = 3;           // 1 = grayscale
  int quality = 90;               // JPEG quality when re-encoding
  int jobs = 1;                   // decoding/encoding threads
  bool skip_corrupt = false;      // warn and skip undecodable files instead of failing
  bool compress = false;          // deflate /images (raw)
};

// A class-per-directory tree (ImageNet's train/val layout, torchvision's
// ImageFolder): classes are the sorted subdirectory names, files (.jpg,
// .jpeg, .png, any case, searched recursively) are taken in sorted order.
ConvertSummary convert_image_folder(const std::string& input, const std::string& output,
                                    const ImageFolderOptions& options,
                                    const ConvertProgress& progress);

}  // namespace convnet
