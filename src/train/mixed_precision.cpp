#include "finch/train/mixed_precision.h"

#include <ATen/autocast_mode.h>

#include "finch/core/error.h"

namespace finch::train {

Precision parse_precision(const std::string& name) {
  if (name == "fp32") return Precision::kFp32;
  if (name == "bf16-mixed") return Precision::kBf16Mixed;
  throw Error("train.precision must be fp32 or bf16-mixed, got '" + name + "'");
}

std::string precision_name(Precision precision) {
  return precision == Precision::kBf16Mixed ? "bf16-mixed" : "fp32";
}

// Mirrors torch.autocast's __enter__ / __exit__ (torch/amp/autocast_mode.py).
AutocastScope::AutocastScope(bool enabled, const torch::Device& device)
    : enabled_(enabled), cuda_(device.is_cuda()) {
  if (!enabled_) return;
  if (cuda_) {
    previous_enabled_ = at::autocast::is_enabled();
    previous_dtype_ = at::autocast::get_autocast_gpu_dtype();
    at::autocast::set_enabled(true);
    at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
  } else {
    previous_enabled_ = at::autocast::is_cpu_enabled();
    previous_dtype_ = at::autocast::get_autocast_cpu_dtype();
    at::autocast::set_cpu_enabled(true);
    at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
  }
  at::autocast::increment_nesting();
}

AutocastScope::~AutocastScope() {
  if (!enabled_) return;
  // The cast weights are cached for the outermost scope only, as in PyTorch.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  if (cuda_) {
    at::autocast::set_enabled(previous_enabled_);
    at::autocast::set_autocast_gpu_dtype(previous_dtype_);
  } else {
    at::autocast::set_cpu_enabled(previous_enabled_);
    at::autocast::set_autocast_cpu_dtype(previous_dtype_);
  }
}

models::ModelOutput outputs_to_fp32(models::ModelOutput output) {
  for (torch::Tensor* t :
       {&output.logits, &output.embedding, &output.aux_logits, &output.attention})
    if (t->defined() && t->is_floating_point() && t->scalar_type() != torch::kFloat)
      *t = t->to(torch::kFloat);
  return output;
}

}  // namespace finch::train
