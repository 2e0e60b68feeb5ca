// Per-sample preprocessing: the augmentation recipes of the papers, and
// normalization into float CHW.
//
// Every random choice comes from SampleRng(seed, epoch, index), so a sample's
// augmentation depends on nothing else: not on thread timing, the number of
// ranks or loader threads, or a restart.
//
// Recipes (train / eval):
//   none      stored image, normalized / same
//   cifar     He et al. 2015 sec. 4.2: zero-pad 4, random crop to the stored
//             size, horizontal flip with p = 1/2 / stored image
//   imagenet  torchvision RandomResizedCrop(size, scale 0.08-1, ratio 3/4-4/3)
//             with antialiased bilinear resampling + flip / Resize(resize) of
//             the shorter side + CenterCrop(size), done in one resampling pass
// and after any of them, in training, random erasing (AugmentOptions).
// Padding is zero in pixel units, as torchvision pads before Normalize.
// The cifar recipe needs images of at least kCifarMinSize on each side: on
// smaller ones most crops are mostly padding, whole batches come out nearly
// constant, and batch norm turns them into exploding gradients.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/named_values.h"
#include "datasets/image.h"

namespace convnet {

enum class Recipe { none, cifar, imagenet };
constexpr int64_t kCifarPadding = 4;
constexpr int64_t kCifarMinSize = 2 * kCifarPadding;
template <>
struct NamedValues<Recipe> {
  static constexpr std::pair<Recipe, const char*> table[] = {
      {Recipe::none, "none"}, {Recipe::cifar, "cifar"}, {Recipe::imagenet, "imagenet"}};
};

// SplitMix64 seeded from (seed, epoch, index).
class SampleRng {
 public:
  SampleRng(uint64_t seed, int64_t epoch, int64_t index);
  uint64_t next();
  double uniform();                            // [0, 1)
  double uniform(double low, double high);     // [low, high)
  int64_t integer(int64_t low, int64_t high);  // [low, high], inclusive as torch.randint + 1

 private:
  uint64_t state_;
};

struct AugmentOptions {
  Recipe recipe = Recipe::none;
  bool train = true;
  int64_t size = 0;    // output height = width; 0 = the image's own size (none, cifar)
  int64_t resize = 0;  // imagenet eval: shorter side before the center crop
  uint64_t seed = 0;
  std::vector<double> mean, std;  // per channel, 0..1 units
  bool channels_last = false;     // write HWC (NHWC batches) instead of CHW
  // Random erasing (Zhong et al. 2020; torchvision's RandomErasing with its
  // defaults): in training, with this probability a rectangle of area
  // 2-33% of the image and aspect ratio 0.3-3.3 (log-uniform; 10 tries) is
  // set to 0 after normalization (the mean colour) in every channel.
  double random_erase = 0;
};

// A rectangle of the output, in pixels.
struct EraseBox {
  int64_t top = 0, left = 0, height = 0, width = 0;
};
// RandomErasing's draw for an image (height, width): false when no try fits.
bool random_erasing_box(int64_t height, int64_t width, SampleRng& rng, EraseBox* box);

// The crop window RandomResizedCrop draws for an image (height, width):
// torchvision's algorithm (10 tries, then a center crop clamped to the ratio).
CropBox random_resized_crop(int64_t height, int64_t width, SampleRng& rng);
// Resize of the shorter side to `resize` then a center `size` crop, as a
// window of the original image.
CropBox resize_center_crop(int64_t height, int64_t width, int64_t resize, int64_t size);

// Writes the preprocessed sample as (C, out_height, out_width) floats at out,
// or (out_height, out_width, C) with options.channels_last.
// Throws std::invalid_argument when the image does not fit the recipe (e.g.
// recipe none with an image of another size).
void preprocess(const Image& image, const AugmentOptions& options, int64_t epoch, int64_t index,
                int64_t out_height, int64_t out_width, float* out);

}  // namespace convnet
