#pragma once
// safetensors: 8-byte little-endian header length N, N bytes of JSON header
// ({"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}),
// then the raw little-endian tensor bytes. Files come from strangers, so the reader
// validates everything before it touches data.
#include <torch/types.h>

#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace finch::io {

struct TensorFile {
  std::vector<std::pair<std::string, torch::Tensor>> tensors;  // in file order (by offset)
  std::map<std::string, std::string> metadata;                 // "__metadata__", may be empty

  /// The tensor named `name`, or an undefined tensor.
  torch::Tensor find(const std::string& name) const;
};

/// Parses safetensors bytes; `source` names the file in error messages.
/// Throws finch::Error on any malformed input (never crashes, never reads out of bounds).
TensorFile parse_safetensors(std::string_view bytes, const std::string& source);

/// Reads and parses a safetensors file.
TensorFile read_safetensors(const std::filesystem::path& path);

/// Reads a safetensors file through a private memory mapping: tensors view the mapping (no
/// copy, no fresh memory to zero; 0.1 s less to load a ResNet-50 here) and keep it alive.
/// Only for loads that copy the tensors somewhere and drop them: a file truncated by another
/// process while still mapped kills the process (SIGBUS). Misaligned tensors are copied.
TensorFile map_safetensors(const std::filesystem::path& path);

/// Serialises tensors (any of F64/F32/F16/BF16/I64/I32/I16/I8/U8/BOOL; made contiguous CPU).
std::string serialize_safetensors(const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                                  const std::map<std::string, std::string>& metadata);

/// Writes a safetensors file atomically.
void write_safetensors(const std::filesystem::path& path,
                       const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata);

}  // namespace finch::io
