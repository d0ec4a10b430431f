#pragma once
// IDX files (MNIST, Fashion-MNIST), gzip-compressed or not.
#include <cstdint>
#include <filesystem>
#include <vector>

namespace finch::io {

struct IdxArray {
  std::vector<int64_t> shape;  // e.g. {60000, 28, 28} for images, {60000} for labels
  std::vector<uint8_t> data;   // row-major, unsigned bytes (the only type MNIST uses)
};

/// Reads an unsigned-byte IDX file (magic 0x00000801 / 0x00000803 ...), gzip or plain.
/// Throws finch::Error naming the file on a bad magic, an unsupported type or a short file.
IdxArray read_idx(const std::filesystem::path& path);

}  // namespace finch::io
