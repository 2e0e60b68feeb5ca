// Decoded images and the pixel operations the converters and the loader share.
//
// An Image is 8-bit, interleaved HWC (channels 1 = gray or 3 = RGB).
// Decoding detects JPEG (libturbojpeg) and PNG (libpng) from the leading
// bytes and converts to the requested channel count; damaged data throws
// DecodeError with the decoder's message, never crashes.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace convnet {

struct Image {
  int64_t height = 0, width = 0, channels = 0;
  std::vector<uint8_t> pixels;  // (height, width, channels)
};

class DecodeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// JPEG or PNG bytes to an image with `channels` (1 or 3) channels.
Image decode_image(const uint8_t* data, std::size_t size, int64_t channels);

// Baseline JPEG with 4:2:0 chroma subsampling for RGB (quality 1..100).
std::vector<uint8_t> encode_jpeg(const Image& image, int quality);

// A window of the source image in source pixel coordinates (may be
// fractional; resampling reads only inside the image).
struct CropBox {
  double top = 0, left = 0, height = 0, width = 0;
};

// Resamples `box` of `src` to (out_height, out_width) with an antialiased
// triangle (bilinear) filter, as PIL's bilinear resize that torchvision uses:
// the filter widens with the downscaling factor, so shrinking averages every
// source pixel instead of skipping some. Result is HWC uint8.
Image resize(const Image& src, const CropBox& box, int64_t out_height, int64_t out_width);

// Same resampling, writing normalized floats straight into a CHW plane set:
// out[c * channel_stride + (y * out_width + x) * pixel_stride]
//   = (v / 255 - mean[c]) / std[c]   (CHW: strides H*W and 1; HWC: 1 and C),
// mirrored horizontally when `flip`.
void resize_normalize(const Image& src, const CropBox& box, int64_t out_height, int64_t out_width,
                      bool flip, const double* mean, const double* std, float* out,
                      int64_t channel_stride, int64_t pixel_stride);

}  // namespace convnet
