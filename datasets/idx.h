// Reader of IDX files (the MNIST / Fashion-MNIST format), gzipped or not.
//
// An IDX file is a 4-byte magic (0, 0, type, rank), `rank` big-endian uint32
// extents, then the items back to back. convnet reads unsigned-byte files
// (type 0x08): images (N, H, W) and labels (N).
#pragma once

#include <zlib.h>

#include <cstdint>
#include <string>
#include <vector>

namespace convnet {

class IdxReader {
 public:
  // Opens and validates the header; throws convnet::Error naming the path.
  explicit IdxReader(const std::string& path);
  ~IdxReader();
  IdxReader(const IdxReader&) = delete;
  IdxReader& operator=(const IdxReader&) = delete;

  const std::vector<int64_t>& dims() const { return dims_; }  // (N, ...)
  int64_t count() const { return dims_[0]; }
  int64_t item_bytes() const;  // product of dims()[1:]
  // Reads the next n items (n * item_bytes() bytes); throws if the file ends early.
  void read(int64_t n, uint8_t* out);
  // After every item was read: throws when the file holds more bytes than its
  // header declares (a damaged or concatenated file).
  void expect_end();

 private:
  std::string path_;
  gzFile file_ = nullptr;
  std::vector<int64_t> dims_;
  int64_t items_read_ = 0;
};

}  // namespace convnet
