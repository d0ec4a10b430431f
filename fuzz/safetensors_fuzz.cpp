// libFuzzer target: parse_safetensors must reject any input with finch::Error, never crash
// or read out of bounds (AddressSanitizer checks that). Whatever it accepts must survive a
// write/read round trip byte-for-byte.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "finch/core/error.h"
#include "finch/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  finch::io::TensorFile file;
  try {
    file = finch::io::parse_safetensors(bytes, "fuzz");
  } catch (const finch::Error&) {
    return 0;
  }
  const std::string written = finch::io::serialize_safetensors(file.tensors, file.metadata);
  finch::io::TensorFile again = finch::io::parse_safetensors(written, "rewritten");
  if (finch::io::serialize_safetensors(again.tensors, again.metadata) != written) std::abort();
  return 0;
}
