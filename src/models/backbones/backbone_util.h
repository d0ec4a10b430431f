#pragma once
// Internal to the backbones: what several families share. torchvision's truncated-normal
// initialisation, row-mode stochastic depth, and the folding of a conv's BatchNorm into it for
// inference copies.
#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>

#include <cmath>
#include <string>
#include <vector>

#include "finch/models/batchnorm.h"
#include "finch/models/inference.h"
#include "finch/models/weight_init.h"

namespace finch::models::backbone_util {

/// The `model.tf_padding` key (owned by inception_v3 and mobilenet_v2) with its docs.
inline const char* const kTfPaddingOption =
    "tf_padding: false  # compute as the Keras original (imported TF.js models): inception_v3's "
    "branch pools average over pixels inside the image only, mobilenet_v2's stride-2 "
    "convolutions pad right and bottom";

/// torch.nn.init.trunc_normal_(t, std=std, a, b) with absolute bounds, as torchvision calls
/// it: PyTorch's inverse-CDF sampling of the truncated normal.
inline void trunc_normal_(torch::Tensor t, double std, double a = -2.0, double b = 2.0) {
  torch::NoGradGuard no_grad;
  auto cdf = [](double x) { return (1.0 + std::erf(x / std::sqrt(2.0))) / 2.0; };
  const double l = cdf(a / std), u = cdf(b / std);
  t.uniform_(2 * l - 1, 2 * u - 1).erfinv_().mul_(std * std::sqrt(2.0)).clamp_(a, b);
}

/// nn::Conv2d(options), or under SkipRandomInit the same conv with an uninitialised weight:
/// built at one channel per group (LibTorch draws random weights in the constructor), then
/// given its real shape.
inline torch::nn::Conv2d conv2d(torch::nn::Conv2dOptions options) {
  if (random_init_enabled()) return torch::nn::Conv2d(options);
  const int64_t in = options.in_channels(), out = options.out_channels();
  torch::nn::Conv2d conv(options.in_channels(options.groups()).out_channels(options.groups()));
  conv->options.in_channels(in).out_channels(out);
  const auto kernel = conv->weight.sizes();
  conv->weight.set_data(torch::empty({out, in / options.groups(), kernel[2], kernel[3]}));
  if (conv->bias.defined()) conv->bias.set_data(torch::empty({out}));
  return conv;
}

/// torchvision.ops.stochastic_depth in "row" mode: each sample's residual branch is dropped
/// with probability p and the survivors scaled by 1 / (1 - p); the identity in eval.
inline torch::Tensor stochastic_depth(const torch::Tensor& x, double p, bool training) {
  if (!training || p == 0.0) return x;
  const double survival = 1.0 - p;
  std::vector<int64_t> shape(x.dim(), 1);
  shape[0] = x.size(0);
  torch::Tensor noise = torch::empty(shape, x.options()).bernoulli_(survival);
  if (survival > 0.0) noise.div_(survival);
  return x * noise;
}

/// Replaces parent's `conv_name` with `conv` folded with `bn` (its weight scaled in place:
/// the old conv is dropped), unregisters the BN and empties its holder (forward then skips
/// it). Nothing when `bn` is already empty.
inline void fold_conv_bn(torch::nn::Module& parent, const std::string& conv_name,
                         torch::nn::Conv2d& conv, const std::string& bn_name, BatchNorm2d& bn) {
  if (!bn) return;
  conv = parent.replace_module(
      conv_name, fold_batchnorm(conv,
                                torch::nn::BatchNorm2d(
                                    std::static_pointer_cast<torch::nn::BatchNorm2dImpl>(bn.ptr())),
                                FoldWeights::kInPlace));
  parent.unregister_module(bn_name);
  bn = nullptr;
}

}  // namespace finch::models::backbone_util
