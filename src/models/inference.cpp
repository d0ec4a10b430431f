#include "finch/models/inference.h"

#include <torch/torch.h>

#include "backbones/backbone_util.h"
#include "finch/core/error.h"
#include "finch/models/int8.h"
#include "finch/models/weight_init.h"

namespace finch::models {

torch::Dtype parse_inference_dtype(const std::string& name) {
  if (name == "fp32" || name == "float32") return torch::kFloat;
  if (name == "bf16" || name == "bfloat16") return torch::kBFloat16;
  if (name == "int8") return torch::kQUInt8;
  throw Error("unknown dtype '" + name + "' (expected fp32, bf16 or int8)");
}

torch::nn::Conv2d fold_batchnorm(const torch::nn::Conv2d& conv, const torch::nn::BatchNorm2d& bn,
                                 FoldWeights weights) {
  TORCH_CHECK(bn->running_mean.defined() && bn->running_var.defined(),
              "BatchNorm folding needs running statistics");
  torch::NoGradGuard no_grad;
  // The per-channel factors in float64, rounded once to the weights' dtype; the weights
  // multiplied in their own dtype (converting ResNet-50's 23 M weights to float64 and back cost
  // about a tenth of a cold start). tests/parity/int8_reference.py folds the same way.
  const auto& bn_options = bn->options;
  torch::Tensor mean = bn->running_mean.to(torch::kDouble);
  torch::Tensor var = bn->running_var.to(torch::kDouble);
  torch::Tensor gamma =
      bn_options.affine() ? bn->weight.to(torch::kDouble) : torch::ones_like(mean);
  torch::Tensor beta = bn_options.affine() ? bn->bias.to(torch::kDouble) : torch::zeros_like(mean);
  torch::Tensor scale = gamma / (var + bn_options.eps()).sqrt();
  const auto dtype = conv->weight.scalar_type();
  torch::Tensor old_bias =
      conv->bias.defined() ? conv->bias.to(torch::kDouble) : torch::zeros_like(mean);
  // A fresh conv with a bias (LibTorch registers "bias" even when it is disabled, so it
  // cannot be added to the old module), its weights set below rather than drawn.
  const auto& c = conv->options;
  torch::nn::Conv2dOptions options(c.in_channels(), c.out_channels(), c.kernel_size());
  options.stride(c.stride())
      .padding(c.padding())
      .dilation(c.dilation())
      .groups(c.groups())
      .padding_mode(c.padding_mode())
      .bias(true);
  torch::nn::Conv2d folded = [&] {
    SkipRandomInit no_draws;
    return backbone_util::conv2d(options);
  }();
  const torch::Tensor factors = scale.to(dtype).reshape({-1, 1, 1, 1});
  torch::Tensor weight = weights == FoldWeights::kInPlace ? conv->weight.detach().mul_(factors)
                                                          : conv->weight * factors;
  folded->weight.set_data(weight.contiguous());
  folded->bias.set_data(((old_bias - mean) * scale + beta).to(dtype));
  folded->train(false);
  return folded;
}

Classifier optimize_for_inference(const ModelSpec& spec, const Classifier& model,
                                  const InferenceOptions& options) {
  Classifier copy = [&] {
    SkipRandomInit loaded_next;
    return build_classifier(spec);
  }();
  load_state_dict(*copy, state_dict(*model), "inference copy");
  return optimize_in_place(copy, options);
}

Classifier optimize_in_place(Classifier copy, const InferenceOptions& options) {
  copy->eval();
  for (auto& parameter : copy->parameters()) parameter.set_requires_grad(false);
  if (options.fold_batchnorm) copy->backbone()->fold_batchnorm();
  torch::NoGradGuard no_grad;
  if (options.dtype == torch::kQUInt8) {
    int8::Calibration calibration = int8::Calibration::from_json(options.int8_ranges);
    if (!options.fold_batchnorm ||
        !copy->backbone()->quantize_int8(calibration, copy->head()->uses_earlier_stages())) {
      throw Error(
          "int8 inference supports the ResNet family (BatchNorm folded, no inserted "
          "attention blocks); use --dtype fp32 or bf16 for this model");
    }
    return copy;  // quantized kernels choose their own layout; the head stays fp32
  }
  if (options.dtype != torch::kFloat) copy->to(options.dtype);
  if (options.onednn_layout && options.fold_batchnorm && options.dtype == torch::kFloat &&
      copy->backbone()->use_onednn_layout()) {
    return copy;  // its own layout: channels-last does not apply
  }
  if (options.channels_last) convert_to_channels_last(*copy);
  return copy;
}

bool channels_last_is_safe(torch::nn::Module& module) {
  constexpr int64_t kSimdFloats = 16;  // one AVX-512 register
  for (const auto& child : module.modules(/*include_self=*/true)) {
    const auto* conv = child->as<torch::nn::Conv2d>();
    if (!conv) continue;
    const int64_t in = conv->options.in_channels(), out = conv->options.out_channels();
    if (in == 3) continue;  // the image: its gradient is never computed
    if (in % kSimdFloats != 0 || out % kSimdFloats != 0) return false;
  }
  return true;
}

void convert_to_channels_last(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& tensor : module.parameters()) {
    if (tensor.dim() == 4) tensor.set_data(tensor.contiguous(torch::MemoryFormat::ChannelsLast));
  }
  for (auto& tensor : module.buffers()) {
    if (tensor.dim() == 4) tensor.set_data(tensor.contiguous(torch::MemoryFormat::ChannelsLast));
  }
}

torch::Tensor prepare_inference_input(const torch::Tensor& images,
                                      const InferenceOptions& options) {
  // int8 models quantize their input themselves, with the calibrated scale.
  torch::Tensor x =
      options.dtype == torch::kQUInt8 ? images.to(torch::kFloat) : images.to(options.dtype);
  if (options.dtype == torch::kQUInt8) return x;
  if (options.channels_last && x.dim() == 4) {
    x = x.contiguous(torch::MemoryFormat::ChannelsLast);
  }
  return x;
}

}  // namespace finch::models
