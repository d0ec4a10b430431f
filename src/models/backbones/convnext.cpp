// ConvNeXt-T/S/B with torchvision's names (features.<i>.<j>.block.{0,2,3,5},
// features.<i>.<j>.layer_scale, LayerNorm2d downsamplers features.{2,4,6}.0, classifier.0).
// Liu et al., "A ConvNet for the 2020s", CVPR 2022.
//
// Four stages, at output strides 4, 8, 16 and 32: the 4x4 patchify stem with the first block
// stage (features.0-1), then each downsampler (LayerNorm2d + 2x2 stride-2 conv) with its block
// stage (features.2-3, 4-5, 6-7). The last stage is features' output, the map torchvision
// pools. embed() applies torchvision's average pool, classifier.0 (LayerNorm2d) and flatten:
// what its final Linear (classifier.2, finch's head.fc) sees. Stochastic depth as torchvision:
// row mode, probability p x block index / (block count - 1) with p = 0.1 / 0.4 / 0.5 for
// T / S / B, training only. No BatchNorm: nothing to fold for inference.
#include <fmt/format.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include "backbone_util.h"
#include "finch/models/registry.h"

namespace finch::models {

namespace {

namespace nn = torch::nn;
using torch::Tensor;

constexpr double kLayerNormEps = 1e-6;

nn::LayerNorm layer_norm(int64_t channels) {
  return nn::LayerNorm(nn::LayerNormOptions({channels}).eps(kLayerNormEps));
}

// torchvision's LayerNorm2d: LayerNorm over the channels of an NCHW map.
Tensor layer_norm_2d(nn::LayerNorm& norm, const Tensor& x) {
  return norm->forward(x.permute({0, 2, 3, 1})).permute({0, 3, 1, 2});
}

// CNBlock: depthwise 7x7 conv -> LayerNorm -> Linear 4x -> GELU -> Linear, in NHWC, scaled
// per channel by layer_scale (initialised to 1e-6), plus the input.
class CNBlockImpl : public nn::Module {
 public:
  CNBlockImpl(int64_t dim, double drop_path) : drop_path_(drop_path) {
    layer_scale_ = register_parameter("layer_scale", torch::full({dim, 1, 1}, 1e-6));
    auto block = register_module("block", std::make_shared<nn::Module>());
    // Children 1, 4 and 6 (Permute, GELU, Permute) hold no tensors.
    dwconv_ = block->register_module(
        "0", nn::Conv2d(nn::Conv2dOptions(dim, dim, 7).padding(3).groups(dim)));
    norm_ = block->register_module("2", layer_norm(dim));
    fc1_ = block->register_module("3", nn::Linear(dim, 4 * dim));
    fc2_ = block->register_module("5", nn::Linear(4 * dim, dim));
  }
  Tensor forward(const Tensor& x) {
    Tensor y = dwconv_(x).permute({0, 2, 3, 1});
    y = fc2_(torch::gelu(fc1_(norm_(y)))).permute({0, 3, 1, 2});
    return backbone_util::stochastic_depth(layer_scale_ * y, drop_path_, is_training()).add_(x);
  }

 private:
  Tensor layer_scale_;
  nn::Conv2d dwconv_{nullptr};
  nn::LayerNorm norm_{nullptr};
  nn::Linear fc1_{nullptr}, fc2_{nullptr};
  double drop_path_;
};
TORCH_MODULE(CNBlock);

// A stage's opening: the stem (conv "0" + LayerNorm2d "1") or a downsampler (LayerNorm2d "0"
// + conv "1").
class TransitionImpl : public nn::Module {
 public:
  TransitionImpl(int64_t in, int64_t out, int64_t patch, bool norm_first)
      : norm_first_(norm_first) {
    nn::Conv2dOptions options(in, out, patch);
    options.stride(patch);
    norm_ = register_module(norm_first ? "0" : "1", layer_norm(norm_first ? in : out));
    conv_ = register_module(norm_first ? "1" : "0", nn::Conv2d(options));
  }
  Tensor forward(const Tensor& x) {
    return norm_first_ ? conv_(layer_norm_2d(norm_, x)) : layer_norm_2d(norm_, conv_(x));
  }

 private:
  nn::LayerNorm norm_{nullptr};
  nn::Conv2d conv_{nullptr};
  bool norm_first_;
};
TORCH_MODULE(Transition);

struct ConvNeXtConfig {
  std::vector<int64_t> dims, depths;
  double drop_path;
  double params_m;
};

const std::vector<std::pair<std::string, ConvNeXtConfig>>& convnext_variants() {
  static const std::vector<std::pair<std::string, ConvNeXtConfig>> v = {
      {"convnext_tiny", {{96, 192, 384, 768}, {3, 3, 9, 3}, 0.1, 28.6}},
      {"convnext_small", {{96, 192, 384, 768}, {3, 3, 27, 3}, 0.4, 50.2}},
      {"convnext_base", {{128, 256, 512, 1024}, {3, 3, 27, 3}, 0.5, 88.6}}};
  return v;
}

// torchvision's trunc_normal_(std=0.02): N(0, 0.02) cut to [-2, 2], i.e. at 100 standard
// deviations, where a cut never happens in practice: a plain normal draw plus the clamp has
// the same distribution, without inverse-CDF sampling (erfinv), which made building
// ConvNeXt-B take seconds.
void trunc_normal_(Tensor& t, double std) { t.normal_(0.0, std).clamp_(-2.0, 2.0); }

class ConvNeXtImpl : public BackboneImpl {
 public:
  explicit ConvNeXtImpl(const ConvNeXtConfig& config) : dims_(config.dims) {
    auto features = register_module("features", std::make_shared<nn::Module>());
    int64_t total = 0;
    for (int64_t d : config.depths) total += d;
    int64_t block_id = 0;
    for (size_t s = 0; s < dims_.size(); ++s) {
      const int64_t dim = dims_[s];
      const std::string open = std::to_string(2 * s), blocks = std::to_string(2 * s + 1);
      transitions_.push_back(features->register_module(
          open, s == 0 ? Transition(3, dim, 4, false) : Transition(dims_[s - 1], dim, 2, true)));
      auto stage = features->register_module(blocks, std::make_shared<nn::Module>());
      std::vector<CNBlock> stage_blocks;
      for (int64_t b = 0; b < config.depths[s]; ++b) {
        const double p = config.drop_path * static_cast<double>(block_id++) / (total - 1.0);
        stage_blocks.push_back(stage->register_module(std::to_string(b), CNBlock(dim, p)));
      }
      stages_.push_back(std::move(stage_blocks));
      prefixes_.push_back({"features." + open, "features." + blocks});
    }
    auto classifier = register_module("classifier", std::make_shared<nn::Module>());
    head_norm_ = classifier->register_module("0", layer_norm(dims_.back()));
    // torchvision's initialisation: truncated normal (std 0.02) conv and linear weights, zero
    // biases; LayerNorms keep weight 1 and bias 0.
    if (!random_init_enabled()) return;
    torch::NoGradGuard no_grad;
    for (auto& module : modules(/*include_self=*/false)) {
      if (auto* conv = module->as<nn::Conv2d>()) {
        trunc_normal_(conv->weight, 0.02);
        nn::init::zeros_(conv->bias);
      } else if (auto* linear = module->as<nn::Linear>()) {
        trunc_normal_(linear->weight, 0.02);
        nn::init::zeros_(linear->bias);
      }
    }
  }

  Features forward_features(const Tensor& images) override {
    Features out;
    Tensor x = images;
    for (size_t s = 0; s < stages_.size(); ++s) {
      x = transitions_[s](x);
      for (auto& block : stages_[s]) x = block(x);
      x = after_stage(s + 1, x);
      out.stages.push_back(x);
    }
    return out;
  }

  Tensor embed(const Features& features) override {
    Tensor x = torch::adaptive_avg_pool2d(features.stages.back(), {1, 1});
    return layer_norm_2d(head_norm_, x).flatten(1);
  }

  int64_t num_features() const override { return dims_.back(); }
  std::vector<std::vector<std::string>> stage_prefixes() const override { return prefixes_; }
  std::string torchvision_classifier() const override { return "classifier.2"; }
  std::vector<int64_t> stage_channels() const override { return dims_; }

 private:
  std::vector<int64_t> dims_;
  std::vector<Transition> transitions_;
  std::vector<std::vector<CNBlock>> stages_;
  std::vector<std::vector<std::string>> prefixes_;
  nn::LayerNorm head_norm_{nullptr};
};

bool register_convnexts() {
  for (const auto& [name, config] : convnext_variants()) {
    backbones().add(
        {name,
         fmt::format("ConvNeXt-{} (Liu et al. 2022), torchvision's names; {:.1f} M parameters, "
                     "4 stages (output strides 4-32), LayerNorm",
                     name == "convnext_tiny"    ? "T"
                     : name == "convnext_small" ? "S"
                                                : "B",
                     config.params_m),
         [config = config](const ModelSpec&) { return std::make_shared<ConvNeXtImpl>(config); },
         {}});
  }
  return true;
}

const bool kConvNeXtsRegistered = register_convnexts();

}  // namespace

}  // namespace finch::models
