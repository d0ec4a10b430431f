#pragma once
// SHA-256 (FIPS 180-4): the identity of a model file, equal to what `sha256sum` prints, so a
// gallery can refuse a model it was not built with.
#include <cstdint>
#include <filesystem>
#include <string>

namespace finch {

/// Lower-case hex SHA-256 of `bytes`.
std::string sha256_hex(const std::string& bytes);

/// Lower-case hex SHA-256 of a file's contents (read in blocks); throws finch::Error when it
/// cannot be read.
std::string sha256_file(const std::filesystem::path& path);

}  // namespace finch
