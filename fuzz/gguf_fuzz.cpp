// libFuzzer target: parse_gguf must reject any input with finch::Error, never crash, read out
// of bounds (AddressSanitizer checks that) or allocate far beyond the input's size. Whatever it
// accepts must be self-consistent: float32 tensors, one stored type each, printable metadata.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "finch/core/error.h"
#include "finch/io/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  finch::io::GgufFile file;
  try {
    file = finch::io::parse_gguf(bytes, "fuzz");
  } catch (const finch::Error&) {
    return 0;
  }
  if (file.tensors.size() != file.stored_types.size()) std::abort();
  for (const auto& [name, tensor] : file.tensors)
    if (tensor.scalar_type() != torch::kFloat32) std::abort();
  (void)file.metadata.dump();  // throws on invalid UTF-8, which the reader must have rejected
  return 0;
}
