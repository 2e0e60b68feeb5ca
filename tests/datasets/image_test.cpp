#include "datasets/image.h"

#include <gtest/gtest.h>
#include <png.h>

#include <cmath>
#include <cstring>

namespace convnet {
namespace {

Image gradient_image(int64_t h, int64_t w, int64_t c) {
  Image image{h, w, c, std::vector<uint8_t>(h * w * c)};
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x)
      for (int64_t k = 0; k < c; ++k)
        image.pixels[(y * w + x) * c + k] = static_cast<uint8_t>((y * 3 + x * 5 + k * 40) % 256);
  return image;
}

std::vector<uint8_t> encode_png(const Image& image) {
  png_image png;
  std::memset(&png, 0, sizeof png);
  png.version = PNG_IMAGE_VERSION;
  png.width = image.width;
  png.height = image.height;
  png.format = image.channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
  png_alloc_size_t size = 0;
  EXPECT_TRUE(png_image_write_to_memory(&png, nullptr, &size, 0, image.pixels.data(), 0, nullptr));
  std::vector<uint8_t> bytes(size);
  EXPECT_TRUE(
      png_image_write_to_memory(&png, bytes.data(), &size, 0, image.pixels.data(), 0, nullptr));
  bytes.resize(size);
  return bytes;
}

TEST(Image, PngRoundTripIsExact) {
  const Image image = gradient_image(7, 9, 3);
  const std::vector<uint8_t> bytes = encode_png(image);
  const Image back = decode_image(bytes.data(), bytes.size(), 3);
  EXPECT_EQ(back.height, 7);
  EXPECT_EQ(back.width, 9);
  EXPECT_EQ(back.pixels, image.pixels);
  // Gray from RGB: a conversion, not an error.
  EXPECT_EQ(decode_image(bytes.data(), bytes.size(), 1).channels, 1);
}

TEST(Image, JpegRoundTripIsClose) {
  Image image{16, 24, 3, std::vector<uint8_t>(16 * 24 * 3, 0)};
  for (int64_t i = 0; i < 16 * 24; ++i) {  // smooth content: JPEG keeps it well
    image.pixels[i * 3] = 100;
    image.pixels[i * 3 + 1] = static_cast<uint8_t>(50 + i % 24 * 4);
    image.pixels[i * 3 + 2] = 200;
  }
  const std::vector<uint8_t> bytes = encode_jpeg(image, 95);
  const Image back = decode_image(bytes.data(), bytes.size(), 3);
  ASSERT_EQ(back.pixels.size(), image.pixels.size());
  double worst = 0;
  for (std::size_t i = 0; i < back.pixels.size(); ++i)
    worst = std::max(worst, std::abs(double(back.pixels[i]) - image.pixels[i]));
  // Quality 95 with 4:2:0 chroma on a smooth image: a few levels at most.
  EXPECT_LE(worst, 12);
}

TEST(Image, DamagedDataThrowsDecodeError) {
  const Image image = gradient_image(32, 32, 3);
  std::vector<uint8_t> jpeg = encode_jpeg(image, 90);
  const std::vector<uint8_t> truncated(jpeg.begin(), jpeg.begin() + jpeg.size() / 2);
  EXPECT_THROW(decode_image(truncated.data(), truncated.size(), 3), DecodeError);
  std::vector<uint8_t> png = encode_png(image);
  png.resize(png.size() / 2);
  EXPECT_THROW(decode_image(png.data(), png.size(), 3), DecodeError);
  const uint8_t text[] = "not an image at all";
  EXPECT_THROW(decode_image(text, sizeof text, 3), DecodeError);
  EXPECT_THROW(decode_image(text, 0, 3), DecodeError);
}

TEST(Image, ResizeKeepsConstantsAndAveragesWhenShrinking) {
  Image flat{10, 14, 1, std::vector<uint8_t>(140, 77)};
  const Image small = resize(flat, {0, 0, 10, 14}, 3, 5);
  for (uint8_t v : small.pixels) EXPECT_EQ(v, 77);
  // 2x shrink of a 0/200 checkerboard: the widened filter averages it to 100
  // (a plain bilinear lookup would alias to 0 or 200).
  Image checker{8, 8, 1, std::vector<uint8_t>(64)};
  for (int64_t i = 0; i < 64; ++i) checker.pixels[i] = ((i / 8 + i % 8) % 2) * 200;
  const Image half = resize(checker, {0, 0, 8, 8}, 4, 4);
  for (int64_t y = 1; y < 3; ++y)
    for (int64_t x = 1; x < 3; ++x) EXPECT_NEAR(half.pixels[y * 4 + x], 100, 1);
  // Identity size and box: the image itself.
  const Image same = gradient_image(6, 5, 3);
  EXPECT_EQ(resize(same, {0, 0, 6, 5}, 6, 5).pixels, same.pixels);
}

TEST(Image, ResizeNormalizeWritesPlanesAndFlips) {
  const Image image = gradient_image(4, 6, 3);
  const double mean[3] = {0.5, 0.25, 0.0}, std[3] = {0.5, 0.25, 1.0};
  std::vector<float> out(3 * 4 * 6), flipped(3 * 4 * 6);
  resize_normalize(image, {0, 0, 4, 6}, 4, 6, false, mean, std, out.data(), 24, 1);
  resize_normalize(image, {0, 0, 4, 6}, 4, 6, true, mean, std, flipped.data(), 24, 1);
  for (int64_t k = 0; k < 3; ++k)
    for (int64_t y = 0; y < 4; ++y)
      for (int64_t x = 0; x < 6; ++x) {
        const double v = image.pixels[(y * 6 + x) * 3 + k] / 255.0;
        EXPECT_NEAR(out[k * 24 + y * 6 + x], (v - mean[k]) / std[k], 1e-5);
        EXPECT_EQ(flipped[k * 24 + y * 6 + (5 - x)], out[k * 24 + y * 6 + x]);
      }
}

}  // namespace
}  // namespace convnet
