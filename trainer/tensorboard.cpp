#include "trainer/tensorboard.h"

#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "core/error.h"

namespace convnet {
namespace tensorboard {
namespace {

// The reflected Castagnoli polynomial's byte table.
const std::array<uint32_t, 256>& crc_table() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  return table;
}

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

template <typename T>
void put_fixed(std::string& out, T value) {  // little-endian, as x86 stores it
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));
  out.append(bytes, sizeof(T));
}

// Field keys: (number << 3) | wire type (0 varint, 1 fixed64, 2 bytes, 5 fixed32).
void put_key(std::string& out, int field, int wire_type) {
  put_varint(out, field << 3 | wire_type);
}
void put_bytes(std::string& out, int field, const std::string& bytes) {
  put_key(out, field, 2);
  put_varint(out, bytes.size());
  out += bytes;
}

std::string event_header(double wall_time, int64_t step) {
  std::string e;
  put_key(e, 1, 1);
  put_fixed(e, wall_time);
  put_key(e, 2, 0);
  put_varint(e, static_cast<uint64_t>(step));
  return e;
}

}  // namespace

uint32_t crc32c(const void* data, std::size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint32_t c = 0xFFFFFFFFu;
  for (std::size_t i = 0; i < n; ++i) c = crc_table()[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

uint32_t masked_crc32c(const void* data, std::size_t n) {
  const uint32_t c = crc32c(data, n);
  return ((c >> 15) | (c << 17)) + 0xA282EAD8u;
}

std::string record(const std::string& data) {
  std::string out;
  const uint64_t length = data.size();
  put_fixed(out, length);
  put_fixed(out, masked_crc32c(&length, sizeof length));
  out += data;
  put_fixed(out, masked_crc32c(data.data(), data.size()));
  return out;
}

std::string file_version_event(double wall_time) {
  std::string e = event_header(wall_time, 0);
  put_bytes(e, 3, "brain.Event:2");
  return e;
}

std::string session_start_event(double wall_time, int64_t step, const std::string& message) {
  std::string log;
  put_key(log, 1, 0);
  put_varint(log, 1);  // SessionLog::START
  put_bytes(log, 3, message);
  std::string e = event_header(wall_time, step);
  put_bytes(e, 7, log);
  return e;
}

std::string scalars_event(double wall_time, int64_t step,
                          const std::vector<std::pair<std::string, double>>& values) {
  std::string summary;
  for (const auto& [tag, value] : values) {
    std::string v;
    put_bytes(v, 1, tag);
    put_key(v, 2, 5);
    put_fixed(v, static_cast<float>(value));
    put_bytes(summary, 1, v);
  }
  std::string e = event_header(wall_time, step);
  put_bytes(e, 5, summary);
  return e;
}

}  // namespace tensorboard

namespace {
double unix_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}
}  // namespace

TensorBoardWriter::TensorBoardWriter(const std::string& directory, int64_t first_step) {
  char host[256] = "localhost";
  gethostname(host, sizeof host - 1);
  const double now = unix_seconds();
  path_ = directory + "/events.out.tfevents." + std::to_string(static_cast<int64_t>(now)) + "." +
          host + "." + std::to_string(getpid()) + ".convnet";
  file_ = std::fopen(path_.c_str(), "ab");
  CONVNET_CHECK(file_ != nullptr, "cannot create the TensorBoard event file ", path_, ": ",
                std::strerror(errno), " (--tensorboard off runs without it)");
  write(tensorboard::file_version_event(now));
  write(tensorboard::session_start_event(now, first_step,
                                         "convnet train from step " + std::to_string(first_step)));
}

TensorBoardWriter::~TensorBoardWriter() {
  if (file_) std::fclose(file_);
}

void TensorBoardWriter::scalars(int64_t step,
                                const std::vector<std::pair<std::string, double>>& values) {
  write(tensorboard::scalars_event(unix_seconds(), step, values));
}

void TensorBoardWriter::write(const std::string& event) {
  const std::string bytes = tensorboard::record(event);
  const bool written = std::fwrite(bytes.data(), 1, bytes.size(), file_) == bytes.size();
  CONVNET_CHECK(std::fflush(file_) == 0 && written, "writing the TensorBoard event file ", path_,
                " failed: ", std::strerror(errno), " (disk full?)");
}

}  // namespace convnet
