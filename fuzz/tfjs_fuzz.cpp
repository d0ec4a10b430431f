// libFuzzer target: parse_tfjs (TF.js layers-model model.json + weight shards) must reject any
// input with finch::Error, never crash, read out of bounds or allocate beyond what the shards
// hold. Input: model.json text, a NUL byte, then the bytes every shard path reads as.
// Whatever it accepts must be self-consistent: one stored type per weight, float32 or int32.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "finch/core/error.h"
#include "finch/io/tfjs.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  const size_t split = input.find('\0');
  const std::string json = input.substr(0, split);
  const std::string shard = split == std::string::npos ? "" : input.substr(split + 1);
  finch::io::TfjsModel model;
  try {
    model = finch::io::parse_tfjs(
        json, [&](const std::string&) { return shard; }, "fuzz");
  } catch (const finch::Error&) {
    return 0;
  }
  if (model.weights.size() != model.stored_types.size()) std::abort();
  for (const auto& [name, tensor] : model.weights)
    if (tensor.scalar_type() != torch::kFloat32 && tensor.scalar_type() != torch::kInt32)
      std::abort();
  return 0;
}
