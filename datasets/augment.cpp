#include "datasets/augment.h"

#include <cmath>
#include <stdexcept>

#include "core/error.h"
#include "datasets/splitmix64.h"

namespace convnet {
namespace {

// Stored pixels, optionally shifted by (dy, dx) with zero padding and
// mirrored, normalized into CHW (or HWC). Covers recipes none and cifar.
void copy_normalize(const Image& image, int64_t dy, int64_t dx, bool flip,
                    const AugmentOptions& options, float* out) {
  const int64_t h = image.height, w = image.width, c = image.channels;
  const int64_t channel_stride = options.channels_last ? 1 : h * w;
  const int64_t pixel_stride = options.channels_last ? c : 1;
  for (int64_t k = 0; k < c; ++k) {
    const float scale = static_cast<float>(1.0 / (255.0 * options.std[k]));
    const float shift = static_cast<float>(-options.mean[k] / options.std[k]);
    float* plane = out + k * channel_stride;
    for (int64_t y = 0; y < h; ++y) {
      const int64_t sy = y + dy;
      float* row = plane + y * w * pixel_stride;
      if (sy < 0 || sy >= h) {
        for (int64_t x = 0; x < w; ++x) row[x * pixel_stride] = shift;
        continue;
      }
      const uint8_t* src = &image.pixels[sy * w * c + k];
      for (int64_t x = 0; x < w; ++x) {
        const int64_t sx = x + dx;
        const float v = (sx < 0 || sx >= w) ? shift : src[sx * c] * scale + shift;
        row[(flip ? w - 1 - x : x) * pixel_stride] = v;
      }
    }
  }
}

}  // namespace

SampleRng::SampleRng(uint64_t seed, int64_t epoch, int64_t index)
    : state_(splitmix64_mix(splitmix64_mix(splitmix64_mix(seed) ^ static_cast<uint64_t>(epoch)) ^
                            static_cast<uint64_t>(index))) {}

uint64_t SampleRng::next() { return splitmix64(state_); }

double SampleRng::uniform() { return (next() >> 11) * 0x1.0p-53; }

double SampleRng::uniform(double low, double high) { return low + (high - low) * uniform(); }

int64_t SampleRng::integer(int64_t low, int64_t high) {
  const uint64_t span = static_cast<uint64_t>(high - low) + 1;
  return low + static_cast<int64_t>(next() % span);
}

CropBox random_resized_crop(int64_t height, int64_t width, SampleRng& rng) {
  const double area = static_cast<double>(height) * width;
  const double log_low = std::log(3.0 / 4.0), log_high = std::log(4.0 / 3.0);
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target = area * rng.uniform(0.08, 1.0);
    const double ratio = std::exp(rng.uniform(log_low, log_high));
    const int64_t w = std::lround(std::sqrt(target * ratio));
    const int64_t h = std::lround(std::sqrt(target / ratio));
    if (w > 0 && h > 0 && w <= width && h <= height) {
      const int64_t top = rng.integer(0, height - h);
      const int64_t left = rng.integer(0, width - w);
      return {double(top), double(left), double(h), double(w)};
    }
  }
  const double in_ratio = static_cast<double>(width) / height;
  int64_t w = width, h = height;
  if (in_ratio < 3.0 / 4.0) {
    h = std::lround(w / (3.0 / 4.0));
  } else if (in_ratio > 4.0 / 3.0) {
    w = std::lround(h * (4.0 / 3.0));
  }
  return {double((height - h) / 2), double((width - w) / 2), double(h), double(w)};
}

CropBox resize_center_crop(int64_t height, int64_t width, int64_t resize, int64_t size) {
  // torchvision Resize(int): the shorter side becomes `resize`, the longer
  // int(resize * long / short).
  int64_t new_h = resize, new_w = resize;
  if (height < width)
    new_w = static_cast<int64_t>(static_cast<double>(resize) * width / height);
  else
    new_h = static_cast<int64_t>(static_cast<double>(resize) * height / width);
  const double top = std::round((new_h - size) / 2.0), left = std::round((new_w - size) / 2.0);
  const double sy = static_cast<double>(height) / new_h, sx = static_cast<double>(width) / new_w;
  return {top * sy, left * sx, size * sy, size * sx};
}

bool random_erasing_box(int64_t height, int64_t width, SampleRng& rng, EraseBox* box) {
  const double area = static_cast<double>(height * width);
  const double log_low = std::log(0.3), log_high = std::log(3.3);
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double erase_area = area * rng.uniform(0.02, 0.33);
    const double aspect = std::exp(rng.uniform(log_low, log_high));
    const auto h = static_cast<int64_t>(std::lround(std::sqrt(erase_area * aspect)));
    const auto w = static_cast<int64_t>(std::lround(std::sqrt(erase_area / aspect)));
    if (!(h < height && w < width) || h < 1 || w < 1) continue;
    box->height = h;
    box->width = w;
    box->top = rng.integer(0, height - h);
    box->left = rng.integer(0, width - w);
    return true;
  }
  return false;
}

namespace {

// Zeroes `box` of the (C, H, W) or (H, W, C) output in every channel.
void erase(const EraseBox& box, int64_t channels, int64_t height, int64_t width, bool channels_last,
           float* out) {
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t y = box.top; y < box.top + box.height; ++y)
      for (int64_t x = box.left; x < box.left + box.width; ++x)
        out[channels_last ? (y * width + x) * channels + c : (c * height + y) * width + x] = 0.0f;
}

void apply_recipe(const Image& image, const AugmentOptions& options, SampleRng& rng,
                  int64_t out_height, int64_t out_width, float* out) {
  const bool stored_size = options.recipe != Recipe::imagenet;
  if (stored_size && (image.height != out_height || image.width != out_width))
    throw std::invalid_argument("image is " + std::to_string(image.height) + "x" +
                                std::to_string(image.width) + ", the batch " +
                                std::to_string(out_height) + "x" + std::to_string(out_width) +
                                " (use the imagenet recipe or --resize/--crop to resize)");
  if (options.recipe == Recipe::none || (options.recipe == Recipe::cifar && !options.train)) {
    copy_normalize(image, 0, 0, false, options, out);
    return;
  }
  if (options.recipe == Recipe::cifar) {
    const int64_t dy = rng.integer(0, 2 * kCifarPadding) - kCifarPadding;
    const int64_t dx = rng.integer(0, 2 * kCifarPadding) - kCifarPadding;
    const bool flip = rng.uniform() < 0.5;
    copy_normalize(image, dy, dx, flip, options, out);
    return;
  }
  CropBox box;
  bool flip = false;
  if (options.train) {
    box = random_resized_crop(image.height, image.width, rng);
    flip = rng.uniform() < 0.5;
  } else {
    box = resize_center_crop(image.height, image.width, options.resize, out_height);
  }
  resize_normalize(image, box, out_height, out_width, flip, options.mean.data(), options.std.data(),
                   out, options.channels_last ? 1 : out_height * out_width,
                   options.channels_last ? image.channels : 1);
}

}  // namespace

void preprocess(const Image& image, const AugmentOptions& options, int64_t epoch, int64_t index,
                int64_t out_height, int64_t out_width, float* out) {
  if (static_cast<int64_t>(options.mean.size()) != image.channels ||
      static_cast<int64_t>(options.std.size()) != image.channels)
    throw std::invalid_argument("mean/std need one value per image channel (" +
                                std::to_string(image.channels) + ")");
  SampleRng rng(options.seed, epoch, index);
  apply_recipe(image, options, rng, out_height, out_width, out);
  if (!options.train || options.random_erase <= 0 || rng.uniform() >= options.random_erase) return;
  EraseBox box;
  if (random_erasing_box(out_height, out_width, rng, &box))
    erase(box, image.channels, out_height, out_width, options.channels_last, out);
}

}  // namespace convnet
