#include "datasets/idx.h"

#include "core/error.h"

namespace convnet {

IdxReader::IdxReader(const std::string& path) : path_(path) {
  file_ = gzopen(path.c_str(), "rb");  // reads plain files transparently too
  CONVNET_CHECK(file_ != nullptr, path, ": cannot open (missing or unreadable)");
  unsigned char magic[4];
  const int got = gzread(file_, magic, 4);
  CONVNET_CHECK(got == 4 && magic[0] == 0 && magic[1] == 0, path,
                ": not an IDX file (bad magic number)");
  CONVNET_CHECK(magic[2] == 0x08, path, ": IDX element type 0x", std::hex, int(magic[2]), std::dec,
                " is not unsigned byte (0x08)");
  const int rank = magic[3];
  CONVNET_CHECK(rank >= 1 && rank <= 4, path, ": IDX rank ", rank, " is not 1 to 4");
  for (int i = 0; i < rank; ++i) {
    unsigned char b[4];
    CONVNET_CHECK(gzread(file_, b, 4) == 4, path, ": truncated IDX header");
    const int64_t extent = (int64_t(b[0]) << 24) | (b[1] << 16) | (b[2] << 8) | b[3];
    CONVNET_CHECK(extent > 0, path, ": IDX extent ", i, " is 0");
    dims_.push_back(extent);
  }
}

IdxReader::~IdxReader() {
  if (file_) gzclose(file_);
}

int64_t IdxReader::item_bytes() const {
  int64_t bytes = 1;
  for (std::size_t i = 1; i < dims_.size(); ++i) bytes *= dims_[i];
  return bytes;
}

void IdxReader::read(int64_t n, uint8_t* out) {
  CONVNET_CHECK(n >= 0 && items_read_ + n <= count(), path_, ": reading items ", items_read_,
                " to ", items_read_ + n, " of ", count());
  int64_t remaining = n * item_bytes();
  while (remaining > 0) {
    const unsigned chunk = static_cast<unsigned>(std::min<int64_t>(remaining, 1 << 30));
    const int got = gzread(file_, out, chunk);
    CONVNET_CHECK(got == static_cast<int>(chunk), path_, ": file ends early (truncated after ",
                  items_read_, " items of ", count(), ")");
    out += chunk;
    remaining -= chunk;
  }
  items_read_ += n;
}

void IdxReader::expect_end() {
  unsigned char extra[4096];
  int64_t trailing = 0;
  for (int got; (got = gzread(file_, extra, sizeof extra)) > 0;) trailing += got;
  CONVNET_CHECK(trailing == 0, path_, ": ", trailing, " bytes follow the ", count(),
                " items its header declares (a damaged or concatenated file)");
}

}  // namespace convnet
