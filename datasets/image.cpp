#include "datasets/image.h"

#include <png.h>
#include <turbojpeg.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>

namespace convnet {
namespace {

// One libturbojpeg handle per thread and direction: creating one costs more
// than decoding a small image, and a handle must not be shared by threads.
struct TurboJpegHandle {
  explicit TurboJpegHandle(bool compress)
      : handle(compress ? tjInitCompress() : tjInitDecompress()) {
    if (!handle) throw std::runtime_error("libturbojpeg: cannot create a handle");
  }
  ~TurboJpegHandle() { tjDestroy(handle); }
  tjhandle handle;
};

// After a failed call a handle may keep state that breaks the next decode
// ("Bogus marker length"), so failures replace the thread's handle.
std::unique_ptr<TurboJpegHandle>& decompressor_slot() {
  thread_local std::unique_ptr<TurboJpegHandle> h;
  if (!h) h = std::make_unique<TurboJpegHandle>(false);
  return h;
}

tjhandle decompressor() { return decompressor_slot()->handle; }

[[noreturn]] void jpeg_failure(const char* what, tjhandle tj) {
  const std::string message = std::string(what) + tjGetErrorStr2(tj);
  decompressor_slot().reset();
  throw DecodeError(message);
}

tjhandle compressor() {
  thread_local TurboJpegHandle h(true);
  return h.handle;
}

Image decode_jpeg(const uint8_t* data, std::size_t size, int64_t channels) {
  tjhandle tj = decompressor();
  int width = 0, height = 0, subsampling = 0, colorspace = 0;
  if (tjDecompressHeader3(tj, data, static_cast<unsigned long>(size), &width, &height, &subsampling,
                          &colorspace) != 0)
    jpeg_failure("JPEG header: ", tj);
  if (width <= 0 || height <= 0 || int64_t(width) * height > (int64_t(1) << 28))
    throw DecodeError("JPEG of unsupported size " + std::to_string(width) + "x" +
                      std::to_string(height));
  Image image;
  image.height = height;
  image.width = width;
  image.channels = channels;
  image.pixels.resize(std::size_t(height) * width * channels);
  if (colorspace == TJCS_CMYK || colorspace == TJCS_YCCK) {
    // libjpeg-turbo cannot convert CMYK to RGB (a few ImageNet files are
    // CMYK). Adobe's files store inverted CMYK, so R = C * K / 255, as PIL.
    std::vector<uint8_t> cmyk(std::size_t(height) * width * 4);
    if (tjDecompress2(tj, data, static_cast<unsigned long>(size), cmyk.data(), width, 0, height,
                      TJPF_CMYK, TJFLAG_STOPONWARNING) != 0)
      jpeg_failure("JPEG data: ", tj);
    for (std::size_t p = 0; p < std::size_t(height) * width; ++p) {
      const unsigned k = cmyk[p * 4 + 3];
      uint8_t rgb[3];
      for (int c = 0; c < 3; ++c) rgb[c] = static_cast<uint8_t>(cmyk[p * 4 + c] * k / 255);
      if (channels == 3) {
        std::copy(rgb, rgb + 3, &image.pixels[p * 3]);
      } else {  // ITU-R 601 luma, as libjpeg's RGB to gray
        image.pixels[p] = static_cast<uint8_t>((299 * rgb[0] + 587 * rgb[1] + 114 * rgb[2]) / 1000);
      }
    }
    return image;
  }
  const int format = channels == 1 ? TJPF_GRAY : TJPF_RGB;
  // Warnings (e.g. premature end of data) are errors too: a truncated file
  // would otherwise decode to a half-grey picture and train silently.
  if (tjDecompress2(tj, data, static_cast<unsigned long>(size), image.pixels.data(), width, 0,
                    height, format, TJFLAG_STOPONWARNING) != 0)
    jpeg_failure("JPEG data: ", tj);
  return image;
}

Image decode_png(const uint8_t* data, std::size_t size, int64_t channels) {
  png_image png;
  std::memset(&png, 0, sizeof png);
  png.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&png, data, size))
    throw DecodeError(std::string("PNG header: ") + png.message);
  std::unique_ptr<png_image, void (*)(png_image*)> guard(&png, png_image_free);
  png.format = channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
  if (png.width == 0 || png.height == 0 || int64_t(png.width) * png.height > (int64_t(1) << 28))
    throw DecodeError("PNG of unsupported size");
  Image image;
  image.height = png.height;
  image.width = png.width;
  image.channels = channels;
  image.pixels.resize(PNG_IMAGE_SIZE(png));
  if (!png_image_finish_read(&png, nullptr, image.pixels.data(), 0, nullptr))
    throw DecodeError(std::string("PNG data: ") + png.message);
  return image;
}

// PIL's bilinear filter: a triangle of radius 1, widened by the scale factor
// when shrinking.
struct FilterTaps {
  std::vector<int64_t> first;  // (out) first source index
  std::vector<int64_t> count;  // (out) taps used
  std::vector<float> weights;  // (out, max_taps)
  int64_t max_taps = 0;
};

FilterTaps filter_taps(double start, double length, int64_t source_size, int64_t out_size) {
  const double scale = length / out_size;
  const double filter_scale = std::max(scale, 1.0);
  const double support = filter_scale;  // triangle radius 1, widened
  FilterTaps taps;
  taps.max_taps = static_cast<int64_t>(std::ceil(support)) * 2 + 1;
  taps.first.resize(out_size);
  taps.count.resize(out_size);
  taps.weights.assign(out_size * taps.max_taps, 0.f);
  for (int64_t o = 0; o < out_size; ++o) {
    const double center = start + (o + 0.5) * scale;
    const int64_t lo = std::max<int64_t>(0, static_cast<int64_t>(std::floor(center - support)));
    const int64_t hi =
        std::min<int64_t>(source_size, static_cast<int64_t>(std::ceil(center + support)));
    double total = 0;
    int64_t n = 0;
    float* w = &taps.weights[o * taps.max_taps];
    for (int64_t s = lo; s < hi && n < taps.max_taps; ++s, ++n) {
      const double value = std::max(0.0, 1.0 - std::abs((s + 0.5 - center) / filter_scale));
      w[n] = static_cast<float>(value);
      total += value;
    }
    if (total <= 0) {  // window outside the image: nearest edge pixel
      n = 1;
      w[0] = 1.f;
      total = 1;
      taps.first[o] = std::clamp<int64_t>(static_cast<int64_t>(center), 0, source_size - 1);
    } else {
      taps.first[o] = lo;
    }
    for (int64_t k = 0; k < n; ++k) w[k] = static_cast<float>(w[k] / total);
    taps.count[o] = n;
  }
  return taps;
}

// Separable resampling; `emit(y, x, c, value)` receives values in 0..255.
template <typename Emit>
void resample(const Image& src, const CropBox& box, int64_t out_height, int64_t out_width,
              Emit emit) {
  if (src.height <= 0 || src.width <= 0 || out_height <= 0 || out_width <= 0 || box.height <= 0 ||
      box.width <= 0)
    throw std::invalid_argument("resize: empty source, box or output");
  const int64_t c = src.channels;
  const FilterTaps rows = filter_taps(box.top, box.height, src.height, out_height);
  const FilterTaps cols = filter_taps(box.left, box.width, src.width, out_width);
  const int64_t row_begin = rows.first.front();
  const int64_t row_end = rows.first.back() + rows.count.back();
  // Horizontal pass over the rows the vertical pass reads.
  std::vector<float> horizontal((row_end - row_begin) * out_width * c);
  for (int64_t y = row_begin; y < row_end; ++y) {
    const uint8_t* line = &src.pixels[y * src.width * c];
    float* out = &horizontal[(y - row_begin) * out_width * c];
    for (int64_t x = 0; x < out_width; ++x) {
      const float* w = &cols.weights[x * cols.max_taps];
      const uint8_t* p = line + cols.first[x] * c;
      for (int64_t k = 0; k < c; ++k) {
        float sum = 0;
        for (int64_t t = 0; t < cols.count[x]; ++t) sum += w[t] * p[t * c + k];
        out[x * c + k] = sum;
      }
    }
  }
  std::vector<float> line(out_width * c);
  for (int64_t y = 0; y < out_height; ++y) {
    const float* w = &rows.weights[y * rows.max_taps];
    std::fill(line.begin(), line.end(), 0.f);
    for (int64_t t = 0; t < rows.count[y]; ++t) {
      const float* in = &horizontal[(rows.first[y] + t - row_begin) * out_width * c];
      for (int64_t i = 0; i < out_width * c; ++i) line[i] += w[t] * in[i];
    }
    for (int64_t x = 0; x < out_width; ++x)
      for (int64_t k = 0; k < c; ++k) emit(y, x, k, line[x * c + k]);
  }
}

}  // namespace

Image decode_image(const uint8_t* data, std::size_t size, int64_t channels) {
  if (channels != 1 && channels != 3)
    throw std::invalid_argument("decode_image: channels must be 1 or 3");
  if (size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF)
    return decode_jpeg(data, size, channels);
  static const uint8_t kPngSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  if (size >= 8 && std::memcmp(data, kPngSignature, 8) == 0)
    return decode_png(data, size, channels);
  throw DecodeError("neither JPEG nor PNG (unknown leading bytes)");
}

std::vector<uint8_t> encode_jpeg(const Image& image, int quality) {
  if (image.channels != 1 && image.channels != 3)
    throw std::invalid_argument("encode_jpeg: channels must be 1 or 3");
  tjhandle tj = compressor();
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
  const int format = image.channels == 1 ? TJPF_GRAY : TJPF_RGB;
  const int subsampling = image.channels == 1 ? TJSAMP_GRAY : TJSAMP_420;
  if (tjCompress2(tj, image.pixels.data(), int(image.width), 0, int(image.height), format, &buffer,
                  &size, subsampling, quality, 0) != 0) {
    tjFree(buffer);
    throw std::runtime_error(std::string("JPEG encoding: ") + tjGetErrorStr2(tj));
  }
  std::vector<uint8_t> bytes(buffer, buffer + size);
  tjFree(buffer);
  return bytes;
}

Image resize(const Image& src, const CropBox& box, int64_t out_height, int64_t out_width) {
  Image out;
  out.height = out_height;
  out.width = out_width;
  out.channels = src.channels;
  out.pixels.resize(out_height * out_width * src.channels);
  resample(src, box, out_height, out_width, [&](int64_t y, int64_t x, int64_t k, float v) {
    out.pixels[(y * out_width + x) * src.channels + k] =
        static_cast<uint8_t>(std::clamp(std::lround(v), 0L, 255L));
  });
  return out;
}

void resize_normalize(const Image& src, const CropBox& box, int64_t out_height, int64_t out_width,
                      bool flip, const double* mean, const double* std, float* out,
                      int64_t channel_stride, int64_t pixel_stride) {
  std::vector<float> scale(src.channels), shift(src.channels);
  for (int64_t k = 0; k < src.channels; ++k) {
    scale[k] = static_cast<float>(1.0 / (255.0 * std[k]));
    shift[k] = static_cast<float>(-mean[k] / std[k]);
  }
  resample(src, box, out_height, out_width, [&](int64_t y, int64_t x, int64_t k, float v) {
    const int64_t ox = flip ? out_width - 1 - x : x;
    out[k * channel_stride + (y * out_width + ox) * pixel_stride] = v * scale[k] + shift[k];
  });
}

}  // namespace convnet
