#pragma once
// What the parity tests against torchvision share: a reference file's tensors under a prefix as
// a state dict, and the difference measure their tolerances are stated in.
#include <torch/torch.h>

#include <algorithm>
#include <string>

#include "finch/io/safetensors.h"
#include "finch/models/pretrained.h"

namespace finch::test {

/// The tensors of `file` whose names start with `prefix`, with the prefix removed.
inline models::StateDict weights_of(const io::TensorFile& file, const std::string& prefix) {
  models::StateDict out;
  for (const auto& [name, tensor] : file.tensors) {
    if (name.rfind(prefix, 0) == 0) out.emplace_back(name.substr(prefix.size()), tensor);
  }
  return out;
}

/// Relative tolerance of the parity tests: same oneDNN kernels as PyTorch, so differences
/// come from summation order only.
inline constexpr double kTolerance = 1e-4;

/// Largest |a - b| relative to max(1, max |b|).
inline double relative_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).abs().max().item<double>() / std::max(1.0, b.abs().max().item<double>());
}

}  // namespace finch::test
