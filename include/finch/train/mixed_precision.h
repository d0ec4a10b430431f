#pragma once
// bf16 mixed-precision training (train.precision: bf16-mixed), the way torch.autocast does it:
// convolutions and matrix products run in bf16 (AMX / AVX512_BF16 on CPU), while the weights,
// their gradients, the optimizer state, normalisation statistics and the loss stay fp32.

#include <torch/types.h>

#include <string>

#include "finch/models/model.h"

namespace finch::train {

enum class Precision { kFp32, kBf16Mixed };

/// "fp32" | "bf16-mixed" -> Precision; throws finch::Error naming the choices otherwise.
Precision parse_precision(const std::string& name);
std::string precision_name(Precision precision);

/// While alive, autocast to bf16 is on for `device`'s type (torch.autocast(device.type,
/// torch.bfloat16)); a disabled scope does nothing. Nests; restores the previous state.
class AutocastScope {
 public:
  AutocastScope(bool enabled, const torch::Device& device);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool enabled_ = false, cuda_ = false, previous_enabled_ = false;
  at::ScalarType previous_dtype_ = at::kFloat;
};

/// The model's outputs as fp32, so that the loss and its reductions run in fp32.
models::ModelOutput outputs_to_fp32(models::ModelOutput output);

}  // namespace finch::train
