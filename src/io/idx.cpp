#include "finch/io/idx.h"

#include <fmt/format.h>
#include <zlib.h>

#include <algorithm>
#include <memory>
#include <string>
#include <type_traits>

#include "finch/core/error.h"

namespace finch::io {

namespace fs = std::filesystem;

namespace {

using GzFile = std::unique_ptr<std::remove_pointer_t<gzFile>, decltype(&gzclose)>;

// Reads up to `size` bytes; returns how many were read (fewer only at the end of the file).
size_t read_some(gzFile file, uint8_t* out, size_t size, const fs::path& path) {
  size_t total = 0;
  while (total < size) {
    unsigned chunk = static_cast<unsigned>(std::min<size_t>(size - total, 1u << 30));
    int n = gzread(file, out + total, chunk);
    if (n < 0) {
      int code = 0;
      const char* message = gzerror(file, &code);
      throw Error("cannot read IDX file " + path.string() + ": " + message);
    }
    if (n == 0) break;
    total += static_cast<size_t>(n);
  }
  return total;
}

}  // namespace

IdxArray read_idx(const fs::path& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) throw Error("IDX file not found: " + path.string());
  // gzopen reads plain files transparently, so one code path serves both.
  GzFile file(gzopen(path.c_str(), "rb"), &gzclose);
  if (!file) throw Error("cannot open IDX file " + path.string());
  gzbuffer(file.get(), 1 << 16);

  uint8_t magic[4];
  if (read_some(file.get(), magic, 4, path) != 4)
    throw Error("IDX file " + path.string() + " is too short for its header");
  if (magic[0] != 0 || magic[1] != 0) throw Error("not an IDX file (bad magic): " + path.string());
  if (magic[2] != 0x08)
    throw Error(
        fmt::format("IDX file {} has element type {:#04x}; only unsigned bytes (0x08) "
                    "are supported",
                    path.string(), magic[2]));
  if (magic[3] < 1 || magic[3] > 4)
    throw Error("IDX file " + path.string() + " has " + std::to_string(magic[3]) +
                " dimensions; expected 1 to 4");

  IdxArray array;
  uint64_t count = 1;
  for (int d = 0; d < magic[3]; ++d) {
    uint8_t b[4];
    if (read_some(file.get(), b, 4, path) != 4)
      throw Error("IDX file " + path.string() + " is too short for its header");
    uint64_t dim = (uint64_t{b[0]} << 24) | (uint64_t{b[1]} << 16) | (uint64_t{b[2]} << 8) | b[3];
    count *= dim;  // at most 4 factors below 2^32 each; checked against 2^40 as we go
    if (count > (uint64_t{1} << 40))
      throw Error("IDX file " + path.string() + " declares an implausibly large array");
    array.shape.push_back(static_cast<int64_t>(dim));
  }

  // Grow in chunks instead of trusting the header with one huge allocation.
  constexpr size_t kChunk = size_t{1} << 26;
  while (array.data.size() < count) {
    size_t start = array.data.size();
    size_t want = std::min<size_t>(kChunk, count - start);
    array.data.resize(start + want);
    size_t got = read_some(file.get(), array.data.data() + start, want, path);
    if (got != want)
      throw Error("IDX file " + path.string() + " is truncated: header declares " +
                  std::to_string(count) + " bytes of data, found " + std::to_string(start + got));
  }
  uint8_t extra;
  if (read_some(file.get(), &extra, 1, path) != 0)
    throw Error("IDX file " + path.string() + " has trailing bytes after its " +
                std::to_string(count) + " bytes of data");
  return array;
}

}  // namespace finch::io
