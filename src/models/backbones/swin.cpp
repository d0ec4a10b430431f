// Swin-T, Swin-S and Swin-B (v1) with torchvision 0.14's names (swin_transformer.py):
// features.0 patch embedding (Conv2d, Permute, LayerNorm), features.1/3/5/7 stages of
// SwinTransformerBlocks, features.2/4/6 PatchMerging, norm; torchvision's `head` is finch's
// head.fc. Liu et al., "Swin Transformer: Hierarchical Vision Transformer using Shifted
// Windows", ICCV 2021.
//
// Stages are the outputs of features.1, .3, .5 and of norm applied to features.7's output, as
// [B, C, H, W] maps (views of the channels-last activations, strides 4, 8, 16, 32); embed() is
// their global average, torchvision's avgpool. Any input size works: windows pad the maps to
// multiples of the window, as torchvision does.
#include <fmt/format.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include <cmath>
#include <map>
#include <tuple>

#include "backbone_util.h"
#include "finch/core/error.h"
#include "finch/models/registry.h"

namespace finch::models {

namespace {

namespace nn = torch::nn;
using backbone_util::trunc_normal_;

struct SwinOptions {
  int64_t embed_dim = 96;
  std::vector<int64_t> depths{2, 2, 6, 2};
  std::vector<int64_t> num_heads{3, 6, 12, 24};
  int64_t window = 7;
  int64_t patch = 4;
  double stochastic_depth = 0.2;  // rate of the last block; earlier blocks' grow linearly to it
};

SwinOptions swin_options(const std::string& name) {
  if (name == "swin_t") return {96, {2, 2, 6, 2}, {3, 6, 12, 24}, 7, 4, 0.2};
  if (name == "swin_s") return {96, {2, 2, 18, 2}, {3, 6, 12, 24}, 7, 4, 0.3};
  if (name == "swin_b") return {128, {2, 2, 18, 2}, {4, 8, 16, 32}, 7, 4, 0.5};
  throw Error("unknown Swin Transformer '" + name + "' (swin_t, swin_s, swin_b)");
}

nn::LayerNorm layer_norm(int64_t dim) {
  return nn::LayerNorm(nn::LayerNormOptions({dim}).eps(1e-5));
}

// torchvision.ops.misc.Permute (no parameters; keeps the Sequential's indices).
class PermuteImpl : public nn::Module {
 public:
  explicit PermuteImpl(std::vector<int64_t> dims) : dims_(std::move(dims)) {}
  torch::Tensor forward(const torch::Tensor& x) { return x.permute(dims_); }

 private:
  std::vector<int64_t> dims_;
};
TORCH_MODULE(Permute);

// torchvision's ShiftedWindowAttention: multi-head self-attention within windows, with a
// learned relative position bias and, for shifted windows, the mask that keeps tokens from
// attending across the wrapped-around border.
class ShiftedWindowAttentionImpl : public nn::Module {
 public:
  ShiftedWindowAttentionImpl(int64_t dim, int64_t window, int64_t shift, int64_t num_heads)
      : window_(window), shift_(shift), num_heads_(num_heads) {
    qkv = register_module("qkv", nn::Linear(dim, dim * 3));
    proj = register_module("proj", nn::Linear(dim, dim));
    relative_position_bias_table =
        register_parameter("relative_position_bias_table",
                           torch::zeros({(2 * window - 1) * (2 * window - 1), num_heads}));
    if (random_init_enabled()) trunc_normal_(relative_position_bias_table, 0.02);
    // Index into the table of every (query, key) pair of a window.
    auto coords = torch::stack(torch::meshgrid({torch::arange(window), torch::arange(window)},
                                               "ij"))
                      .flatten(1);  // [2, N]
    auto relative = (coords.unsqueeze(2) - coords.unsqueeze(1)).permute({1, 2, 0}) + (window - 1);
    relative_position_index = register_buffer(
        "relative_position_index",
        (relative.select(2, 0) * (2 * window - 1) + relative.select(2, 1)).flatten());
  }

  // [B, H, W, C] -> [B, H, W, C]
  torch::Tensor forward(const torch::Tensor& input) {
    const int64_t B = input.size(0), H = input.size(1), W = input.size(2), C = input.size(3);
    const int64_t ws = window_, n = ws * ws;
    const int64_t pad_r = (ws - W % ws) % ws, pad_b = (ws - H % ws) % ws;
    torch::Tensor x = torch::constant_pad_nd(input, {0, 0, 0, pad_r, 0, pad_b});
    const int64_t pH = x.size(1), pW = x.size(2);
    // No shift along a side the window already covers.
    const int64_t shift_h = ws >= pH ? 0 : shift_, shift_w = ws >= pW ? 0 : shift_;
    const bool shifted = shift_h + shift_w > 0;
    if (shifted) x = torch::roll(x, {-shift_h, -shift_w}, {1, 2});

    const int64_t windows = (pH / ws) * (pW / ws);
    x = x.view({B, pH / ws, ws, pW / ws, ws, C})
            .permute({0, 1, 3, 2, 4, 5})
            .reshape({B * windows, n, C});

    auto qkv_ =
        qkv(x).reshape({x.size(0), n, 3, num_heads_, C / num_heads_}).permute({2, 0, 3, 1, 4});
    torch::Tensor q = qkv_[0] * std::pow(static_cast<double>(C / num_heads_), -0.5);
    torch::Tensor attn = q.matmul(qkv_[1].transpose(-2, -1));
    attn = attn + relative_position_bias_table.index({relative_position_index})
                      .view({n, n, -1})
                      .permute({2, 0, 1})
                      .unsqueeze(0);
    if (shifted) {
      attn = attn.view({B, windows, num_heads_, n, n}) +
             mask(pH, pW, shift_h, shift_w, attn).unsqueeze(1).unsqueeze(0);
      attn = attn.view({-1, num_heads_, n, n});
    }
    attn = torch::softmax(attn, -1);
    x = proj(attn.matmul(qkv_[2]).transpose(1, 2).reshape({x.size(0), n, C}));

    x = x.view({B, pH / ws, pW / ws, ws, ws, C})
            .permute({0, 1, 3, 2, 4, 5})
            .reshape({B, pH, pW, C});
    if (shifted) x = torch::roll(x, {shift_h, shift_w}, {1, 2});
    return x.slice(1, 0, H).slice(2, 0, W).contiguous();
  }

  nn::Linear qkv{nullptr}, proj{nullptr};
  torch::Tensor relative_position_bias_table, relative_position_index;

 private:
  // [windows, N, N]: 0 between tokens of the same region of the shifted map, -100 otherwise.
  // Constant for a padded size, so built once per size (device and dtype of `like`).
  torch::Tensor mask(int64_t pH, int64_t pW, int64_t shift_h, int64_t shift_w,
                     const torch::Tensor& like) {
    auto key = std::make_tuple(pH, pW, like.device().str(), like.scalar_type());
    auto it = masks_.find(key);
    if (it != masks_.end()) return it->second;
    const int64_t ws = window_;
    torch::NoGradGuard no_grad;
    torch::Tensor regions = torch::zeros({pH, pW});
    const std::vector<std::pair<int64_t, int64_t>> hs = {
        {0, pH - ws}, {pH - ws, pH - shift_h}, {pH - shift_h, pH}};
    const std::vector<std::pair<int64_t, int64_t>> wsl = {
        {0, pW - ws}, {pW - ws, pW - shift_w}, {pW - shift_w, pW}};
    int64_t count = 0;
    for (const auto& [h0, h1] : hs)
      for (const auto& [w0, w1] : wsl) regions.slice(0, h0, h1).slice(1, w0, w1).fill_(count++);
    regions = regions.view({pH / ws, ws, pW / ws, ws})
                  .permute({0, 2, 1, 3})
                  .reshape({(pH / ws) * (pW / ws), ws * ws});
    torch::Tensor diff = regions.unsqueeze(1) - regions.unsqueeze(2);
    torch::Tensor m = torch::zeros_like(diff).masked_fill_(diff != 0, -100.0);
    m = m.to(like.options());
    masks_.emplace(key, m);
    return m;
  }

  int64_t window_, shift_, num_heads_;
  std::map<std::tuple<int64_t, int64_t, std::string, torch::ScalarType>, torch::Tensor> masks_;
};
TORCH_MODULE(ShiftedWindowAttention);

// torchvision's SwinTransformerBlock: x + drop(attn(norm1(x))), then + drop(mlp(norm2(.))),
// with stochastic depth per sample ("row") in training.
class SwinBlockImpl : public nn::Module {
 public:
  SwinBlockImpl(int64_t dim, int64_t num_heads, int64_t window, int64_t shift, double drop_rate)
      : drop_rate_(drop_rate) {
    norm1 = register_module("norm1", layer_norm(dim));
    attn = register_module("attn", ShiftedWindowAttention(dim, window, shift, num_heads));
    norm2 = register_module("norm2", layer_norm(dim));
    mlp = register_module("mlp",
                          nn::Sequential(nn::Linear(dim, 4 * dim), nn::GELU(), nn::Dropout(0.0),
                                         nn::Linear(4 * dim, dim), nn::Dropout(0.0)));
  }

  torch::Tensor forward(const torch::Tensor& input) {
    torch::Tensor x = input + drop_path(attn(norm1(input)));
    return x + drop_path(mlp->forward(norm2(x)));
  }

  nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  ShiftedWindowAttention attn{nullptr};
  nn::Sequential mlp{nullptr};

 private:
  torch::Tensor drop_path(const torch::Tensor& x) {
    return backbone_util::stochastic_depth(x, drop_rate_, is_training());
  }

  double drop_rate_;
};
TORCH_MODULE(SwinBlock);

// torchvision's PatchMerging: 2x2 neighbours concatenated (odd sides padded), normalised and
// projected from 4C to 2C channels.
class PatchMergingImpl : public nn::Module {
 public:
  explicit PatchMergingImpl(int64_t dim) {
    reduction =
        register_module("reduction", nn::Linear(nn::LinearOptions(4 * dim, 2 * dim).bias(false)));
    norm = register_module("norm", layer_norm(4 * dim));
  }

  // [B, H, W, C] -> [B, ceil(H/2), ceil(W/2), 2C]
  torch::Tensor forward(const torch::Tensor& input) {
    const int64_t H = input.size(1), W = input.size(2);
    torch::Tensor x = torch::constant_pad_nd(input, {0, 0, 0, W % 2, 0, H % 2});
    using torch::indexing::Slice;
    auto part = [&x](int64_t h, int64_t w) {
      return x.index(
          {Slice(), Slice(h, torch::indexing::None, 2), Slice(w, torch::indexing::None, 2)});
    };
    x = torch::cat({part(0, 0), part(1, 0), part(0, 1), part(1, 1)}, -1);
    return reduction(norm(x));
  }

  nn::Linear reduction{nullptr};
  nn::LayerNorm norm{nullptr};
};
TORCH_MODULE(PatchMerging);

class SwinTransformerImpl : public BackboneImpl {
 public:
  explicit SwinTransformerImpl(const SwinOptions& options) : options_(options) {
    const int64_t dim = options_.embed_dim;
    // features.<i> children registered by index, as torchvision's Sequential names them
    // (a LibTorch Sequential cannot hold Sequentials).
    auto features = register_module("features", std::make_shared<nn::Module>());
    patch_embed_ = features->register_module(
        "0",
        nn::Sequential(nn::Conv2d(nn::Conv2dOptions(3, dim, options_.patch).stride(options_.patch)),
                       Permute(std::vector<int64_t>{0, 2, 3, 1}), layer_norm(dim)));
    int64_t total = 0;
    for (int64_t d : options_.depths) total += d;
    int64_t block_id = 0;
    const size_t n_stages = options_.depths.size();
    for (size_t s = 0; s < n_stages; ++s) {
      const int64_t stage_dim = dim << s;
      nn::Sequential stage;
      for (int64_t i = 0; i < options_.depths[s]; ++i) {
        // torchvision's linearly increasing stochastic depth over all blocks.
        const double rate = options_.stochastic_depth * static_cast<double>(block_id++) /
                            static_cast<double>(total - 1);
        stage->push_back(SwinBlock(stage_dim, options_.num_heads[s], options_.window,
                                   i % 2 == 0 ? 0 : options_.window / 2, rate));
      }
      stages_.push_back(features->register_module(std::to_string(2 * s + 1), stage));
      stage_channels_.push_back(stage_dim);
      if (s + 1 < n_stages)
        merges_.push_back(
            features->register_module(std::to_string(2 * s + 2), PatchMerging(stage_dim)));
    }
    norm_ = register_module("norm", layer_norm(stage_channels_.back()));
    // torchvision: every Linear trunc_normal(0.02) with zero bias (the convolution keeps
    // PyTorch's default initialisation).
    if (!random_init_enabled()) return;
    for (auto& module : modules(/*include_self=*/false)) {
      if (auto* linear = module->as<nn::Linear>()) {
        trunc_normal_(linear->weight, 0.02);
        if (linear->bias.defined()) nn::init::zeros_(linear->bias);
      }
    }
  }

  Features forward_features(const torch::Tensor& images) override {
    if (images.dim() != 4 || images.size(1) != 3)
      throw Error(fmt::format("Swin Transformer: expected images [B, 3, H, W], got {}",
                              fmt::join(images.sizes(), "x")));
    Features out;
    torch::Tensor x = patch_embed_->forward(images);  // [B, H/4, W/4, C]
    for (size_t s = 0; s < stages_.size(); ++s) {
      x = stages_[s]->forward(x);
      const bool last = s + 1 == stages_.size();
      if (last) x = norm_(x);
      torch::Tensor map = after_stage(s + 1, x.permute({0, 3, 1, 2}));
      out.stages.push_back(map);
      if (!last) x = merges_[s](map.permute({0, 2, 3, 1}));
    }
    return out;
  }

  int64_t num_features() const override { return stage_channels_.back(); }
  bool matmul_bound() const override { return true; }
  std::vector<std::vector<std::string>> stage_prefixes() const override {
    std::vector<std::vector<std::string>> prefixes;
    for (size_t s = 0; s < stages_.size(); ++s) {
      // Stage s: the patch embedding or the merge before it, and its blocks.
      prefixes.push_back(
          {"features." + std::to_string(2 * s), "features." + std::to_string(2 * s + 1)});
    }
    prefixes.back().push_back("norm");
    return prefixes;
  }
  std::string torchvision_classifier() const override { return "head"; }
  int64_t output_stride() const override { return options_.patch << (stages_.size() - 1); }
  std::vector<int64_t> stage_channels() const override { return stage_channels_; }

 private:
  SwinOptions options_;
  nn::Sequential patch_embed_{nullptr};
  std::vector<nn::Sequential> stages_;
  std::vector<PatchMerging> merges_;
  nn::LayerNorm norm_{nullptr};
  std::vector<int64_t> stage_channels_;
};

bool register_swins() {
  const std::vector<std::pair<const char*, const char*>> swins = {
      {"swin_t",
       "Swin-T (Liu et al. 2021), torchvision's names; 28 M parameters; shifted-window "
       "attention, any input size"},
      {"swin_s", "Swin-S, torchvision's names; 50 M parameters"},
      {"swin_b", "Swin-B, torchvision's names; 88 M parameters"}};
  for (const auto& [name, description] : swins) {
    backbones().add({name,
                     description,
                     [name = std::string(name)](const ModelSpec&) {
                       return std::make_shared<SwinTransformerImpl>(swin_options(name));
                     },
                     {}});
  }
  return true;
}

const bool kSwinsRegistered = register_swins();

}  // namespace

}  // namespace finch::models
