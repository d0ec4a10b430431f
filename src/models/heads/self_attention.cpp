// Self-attention head: the last stage's map as tokens (1x1 projection to `dim`), a class
// token and learned position embeddings, `layers` pre-norm transformer encoder layers of
// multi-head scaled dot-product attention softmax(Q K^T / sqrt(d_k)) V and a GELU MLP, and a
// linear classifier on the class token. Options in `model.self_attention`: dim (256), heads
// (8), layers (1), mlp_ratio (2). The class token's attention to every position, per head,
// is returned as the attention maps [B, heads, h, w].
//
// Position embeddings are learned for the grid of model.input_size / the backbone's output
// stride and bilinearly resized when another image size gives another grid.
#include <torch/nn/init.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/torch.h>

#include <cmath>

#include "finch/core/error.h"
#include "finch/models/registry.h"
#include "finch/models/weight_init.h"

namespace finch::models {

namespace {

namespace nn = torch::nn;
namespace F = torch::nn::functional;

class EncoderLayerImpl : public nn::Module {
 public:
  EncoderLayerImpl(int64_t dim, int64_t heads, int64_t hidden) : heads_(heads) {
    norm1 = register_module("norm1", nn::LayerNorm(nn::LayerNormOptions({dim})));
    qkv = register_module("qkv", nn::Linear(dim, 3 * dim));
    proj = register_module("proj", nn::Linear(dim, dim));
    norm2 = register_module("norm2", nn::LayerNorm(nn::LayerNormOptions({dim})));
    fc1 = register_module("fc1", nn::Linear(dim, hidden));
    fc2 = register_module("fc2", nn::Linear(hidden, dim));
  }

  /// tokens [B, N, D] -> (tokens, attention weights [B, heads, N, N]).
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& tokens) {
    const int64_t b = tokens.size(0), n = tokens.size(1), d = tokens.size(2);
    const int64_t dk = d / heads_;
    // [B, N, 3, H, dk] -> 3 x [B, H, N, dk]
    torch::Tensor qkv_heads =
        qkv(norm1(tokens)).reshape({b, n, 3, heads_, dk}).permute({2, 0, 3, 1, 4});
    torch::Tensor q = qkv_heads[0], k = qkv_heads[1], v = qkv_heads[2];
    torch::Tensor weights = torch::softmax(
        torch::matmul(q, k.transpose(-2, -1)) / std::sqrt(static_cast<double>(dk)), -1);
    torch::Tensor attended = torch::matmul(weights, v).transpose(1, 2).reshape({b, n, d});
    torch::Tensor x = tokens + proj(attended);
    x = x + fc2(F::gelu(fc1(norm2(x))));
    return {x, weights};
  }

 private:
  int64_t heads_;
  nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  nn::Linear qkv{nullptr}, proj{nullptr}, fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(EncoderLayer);

class SelfAttentionHeadImpl : public HeadImpl {
 public:
  SelfAttentionHeadImpl(const ModelSpec& spec, const BackboneImpl& backbone) {
    const ModelSpec options = spec_section(spec, "self_attention");
    const int64_t dim = spec_value<int64_t>(options, "dim", 256);
    const int64_t heads = spec_value<int64_t>(options, "heads", 8);
    const int64_t layers = spec_value<int64_t>(options, "layers", 1);
    const double mlp_ratio = spec_value<double>(options, "mlp_ratio", 2.0);
    if (dim < 1 || heads < 1 || dim % heads != 0 || layers < 1)
      throw Error(
          "model.self_attention: dim must be a positive multiple of heads and layers >= 1"
          " (dim " +
          std::to_string(dim) + ", heads " + std::to_string(heads) + ")");
    const int64_t input = spec_value<int64_t>(spec, "input_size", 224);
    grid_ = std::max<int64_t>(1, (input + backbone.output_stride() - 1) / backbone.output_stride());

    tokens =
        register_module("tokens", nn::Conv2d(nn::Conv2dOptions(backbone.num_features(), dim, 1)));
    cls_token = register_parameter("cls_token", torch::zeros({1, 1, dim}));
    pos_embed = register_parameter("pos_embed", torch::zeros({1, 1 + grid_ * grid_, dim}));
    if (random_init_enabled()) {
      nn::init::normal_(cls_token, 0.0, 0.02);
      nn::init::normal_(pos_embed, 0.0, 0.02);
    }
    auto list = register_module("layers", nn::ModuleList());
    for (int64_t l = 0; l < layers; ++l) {
      layers_.push_back(
          EncoderLayer(dim, heads, static_cast<int64_t>(std::lround(dim * mlp_ratio))));
      list->push_back(layers_.back());
    }
    norm = register_module("norm", nn::LayerNorm(nn::LayerNormOptions({dim})));
    dropout = register_module("dropout", nn::Dropout(spec_value<double>(spec, "dropout", 0.0)));
    fc = register_module("fc", nn::Linear(dim, spec_value<int64_t>(spec, "num_classes", 0)));
  }

  ModelOutput forward_head(const Features& features, BackboneImpl&) override {
    torch::Tensor map = tokens(features.stages.back());  // [B, D, h, w]
    const int64_t b = map.size(0), d = map.size(1), h = map.size(2), w = map.size(3);
    torch::Tensor x = torch::cat({cls_token.expand({b, 1, d}), map.flatten(2).transpose(1, 2)}, 1);
    x = x + position_embedding(h, w);
    torch::Tensor weights;
    for (auto& layer : layers_) std::tie(x, weights) = layer->forward(x);
    torch::Tensor cls = norm(x.select(1, 0));
    ModelOutput out;
    out.logits = fc(dropout(cls));
    out.embedding = cls;
    // Class token -> positions, per head, as maps.
    out.attention = weights.select(2, 0).slice(2, 1).reshape({b, -1, h, w});
    return out;
  }

  int64_t embedding_dim() const override { return fc->options.in_features(); }
  double default_clip_grad_norm() const override { return 1.0; }

 private:
  torch::Tensor position_embedding(int64_t h, int64_t w) {
    if (h == grid_ && w == grid_) return pos_embed;
    const int64_t d = pos_embed.size(2);
    torch::Tensor grid = pos_embed.slice(1, 1).reshape({1, grid_, grid_, d}).permute({0, 3, 1, 2});
    grid = F::interpolate(grid, F::InterpolateFuncOptions()
                                    .size(std::vector<int64_t>{h, w})
                                    .mode(torch::kBilinear)
                                    .align_corners(false));
    return torch::cat({pos_embed.slice(1, 0, 1), grid.flatten(2).transpose(1, 2)}, 1);
  }

  int64_t grid_ = 1;
  nn::Conv2d tokens{nullptr};
  torch::Tensor cls_token, pos_embed;
  std::vector<EncoderLayer> layers_;
  nn::LayerNorm norm{nullptr};
  nn::Dropout dropout{nullptr};
  nn::Linear fc{nullptr};
};

FINCH_REGISTER_HEAD({"self_attention",
                     "transformer encoder layers over the last stage's positions, then a class "
                     "token's classifier",
                     [](const ModelSpec& spec, const BackboneImpl& backbone) {
                       return std::make_shared<SelfAttentionHeadImpl>(spec, backbone);
                     },
                     {{"model.self_attention",
                       R"(dim: 256        # token width (1x1 projection of the stage)
heads: 8
layers: 1
mlp_ratio: 2.0)"}}});

}  // namespace

}  // namespace finch::models
