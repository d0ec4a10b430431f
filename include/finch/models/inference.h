#pragma once
// An inference-optimised copy of a classifier: eval mode, BatchNorm folded into the
// preceding convolution, channels-last weights, optional bf16. The source model is never
// touched (it may still train), and its parameter names and values stay as saved.
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/types.h>

#include <string>

#include "finch/models/model.h"

namespace finch::models {

struct InferenceOptions {
  bool fold_batchnorm = true;          // y = conv(x) * s + t folded into the conv's weight and bias
  bool channels_last = true;           // NHWC activations: oneDNN's native layout, no reorders
  torch::Dtype dtype = torch::kFloat;  // kFloat, kBFloat16 (AVX512_BF16 CPUs) or kQUInt8 (int8)
  bool onednn_layout = true;           // fp32, BN folded: weights prepacked for oneDNN (ResNets)
  /// kQUInt8: the activation ranges recorded by eval::calibrate_int8 (models/int8.h).
  nlohmann::json int8_ranges;
};

/// "fp32" | "bf16" | "int8" -> dtype (int8: kQUInt8, the activations' type); throws
/// finch::Error otherwise.
torch::Dtype parse_inference_dtype(const std::string& name);

/// What fold_batchnorm does with the conv's weight tensor.
enum class FoldWeights {
  kCopy,    // the inputs are not changed
  kInPlace  // scaled in place and shared with the result: for a conv about to be replaced by
            // it (a model optimised in place), saving a fresh copy of every weight
};

/// A new conv computing bn(conv(x)) with eval-mode `bn` (running statistics): weight *
/// s and bias (old bias - mean) * s + beta with s = gamma / sqrt(var + eps).
torch::nn::Conv2d fold_batchnorm(const torch::nn::Conv2d& conv, const torch::nn::BatchNorm2d& bn,
                                 FoldWeights weights = FoldWeights::kCopy);

/// A new classifier built from `spec` holding a copy of `model`'s weights, in eval mode,
/// optimised per `options`. Logits equal model's eval logits up to float rounding (~1e-5
/// relative in fp32). Backbones without a folding rule keep their BatchNorms.
Classifier optimize_for_inference(const ModelSpec& spec, const Classifier& model,
                                  const InferenceOptions& options = {});

/// The same optimisation applied to `model` itself (no second model is built: what a
/// session that owns its loaded model uses, saving a full build at start-up). The model can no
/// longer train afterwards.
Classifier optimize_in_place(Classifier model, const InferenceOptions& options = {});

/// Puts every 4-d parameter and buffer of `module` in channels-last (NHWC) memory order, the
/// layout oneDNN's convolutions use natively (no reorders per call). Values and names are
/// unchanged; saving writes them in the usual order. Used by inference copies and by
/// training with `train.channels_last`.
void convert_to_channels_last(torch::nn::Module& module);

/// Whether oneDNN's channels-last convolutions are safe for `module`: every convolution that
/// does not read the 3-channel image has input and output channel counts that are multiples
/// of 16. oneDNN 2.6 (Debian's) writes past the end of the input gradient in its NHWC 1x1
/// backward-data kernel when the input has fewer channels than one SIMD register (found with
/// valgrind on a width-4 ResNet-20; it corrupted the heap on AVX-512 machines), so narrow
/// models train and run in NCHW instead. Every torchvision-width model passes.
bool channels_last_is_safe(torch::nn::Module& module);

/// Converts a [B, 3, H, W] float batch to what an optimised model expects (memory format,
/// dtype).
torch::Tensor prepare_inference_input(const torch::Tensor& images, const InferenceOptions& options);

}  // namespace finch::models
