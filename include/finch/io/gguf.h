#pragma once
// GGUF (ggml's single-file model format, versions 2 and 3; github.com/ggerganov/ggml
// docs/gguf.md): "GGUF", u32 version, u64 tensor count, u64 metadata count, typed metadata
// key/values (integers, floats, bool, strings, nested arrays), tensor infos (name, dimensions
// in ggml order = torch's reversed, ggml type, offset into the data section), zero padding to
// `general.alignment` (default 32), the data section. Only little-endian files exist in
// practice and only those are read. Files come from strangers: every count, length, dimension
// and offset is checked against the file size before anything is allocated.
#include <torch/types.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace finch::io {

struct GgufFile {
  uint32_t version = 0;
  /// Key -> value: integers as JSON integers (unsigned ones unsigned), floats as numbers,
  /// bool, UTF-8 strings, arrays (nested as in the file).
  nlohmann::json metadata = nlohmann::json::object();
  /// float32, in torch's shape, in file order.
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  /// The ggml type each tensor was stored as ("F16", "F32", "BF16", "Q8_0"), in file order.
  std::vector<std::string> stored_types;
};

/// True when `bytes` start with the GGUF magic.
bool is_gguf(const std::string& bytes);

/// True when the file at `path` starts with the GGUF magic (false when it cannot be read).
bool has_gguf_magic(const std::filesystem::path& path);

/// Parses GGUF bytes; `source` names the file in error messages. Tensors of type F32, F16,
/// BF16 and Q8_0 are converted to float32; any other type throws finch::Error naming the
/// tensor and the type, as does any malformed input (never crashes, never reads out of bounds,
/// never allocates more than a small multiple of the input's size).
GgufFile parse_gguf(const std::string& bytes, const std::string& source);

/// Reads and parses a GGUF file.
GgufFile read_gguf(const std::filesystem::path& path);

}  // namespace finch::io
