// TransFG head (He et al., "TransFG: A Transformer Architecture for Fine-grained Recognition",
// AAAI 2022), only on the Vision Transformer backbones. Its part selection module replaces the
// input of the last encoder layer:
//  - the attention probabilities of layers 1..L-1 are multiplied per head, a_{L-1} ... a_1 (raw
//    probabilities: no identity for the residual, no average over heads, as in the authors' code,
//    TACJu/TransFG);
//  - for each head, the patch token (never the class token) with the largest entry in the class
//    token's row of that product is selected: K = heads tokens, the same token possibly twice;
//  - the class token and the K selected tokens, taken from the hidden states that enter the last
//    layer, go through the last encoder layer and encoder.ln (the backbone's, so pretrained
//    weights serve; the authors' code starts from a fresh copy of the layer);
//  - that class token is the embedding (where the recipes put the contrastive loss) and `fc`
//    classifies it.
// The attention maps [B, heads, h, w] are each head's class-token row of the product over the
// patch grid, so `finch explain --method attention` shows what was selected. The backbone still
// runs its own last layer over every token (stage 4 and embed()); this head does not use them.
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/torch.h>

#include "finch/core/error.h"
#include "finch/models/backbones/vit.h"
#include "finch/models/registry.h"

namespace finch::models {

namespace {

namespace nn = torch::nn;

// The class token's row of a_{L-1} ... a_1 for each head, [B, heads, T]. Computed from the left
// as a row vector, (e_0^T a_{L-1}) a_{L-2} ... a_1: O(T^2) per layer where the authors'
// right-to-left product of full matrices costs O(T^3); the same row up to rounding. Only an
// argmax and the maps are taken from it, so no gradient flows through it.
torch::Tensor class_token_rollout(const std::vector<torch::Tensor>& attention) {
  torch::NoGradGuard no_grad;
  torch::Tensor row = attention.back().slice(2, 0, 1).to(torch::kFloat);  // [B, heads, 1, T]
  for (size_t l = attention.size() - 1; l-- > 0;) row = row.matmul(attention[l].to(torch::kFloat));
  return row.squeeze(2);
}

class TransFGHeadImpl : public HeadImpl {
 public:
  TransFGHeadImpl(const ModelSpec& spec, const BackboneImpl& backbone) {
    const auto* vit = dynamic_cast<const VisionTransformerImpl*>(&backbone);
    if (!vit)
      throw Error(
          "model.head: transfg selects parts from a Vision Transformer's attention and "
          "needs model.backbone vit_b_16, vit_b_32 or vit_l_16 (got '" +
          spec_value<std::string>(spec, "backbone", "?") +
          "'); use the self_attention or wsdan head with other backbones");
    // build_classifier hands the head builder the backbone it has just built (not a const
    // object): make its forward keep what the part selection reads.
    const_cast<VisionTransformerImpl*>(vit)->keep_last_layer_input(true);
    dropout = register_module("dropout", nn::Dropout(spec_value<double>(spec, "dropout", 0.0)));
    fc = register_module(
        "fc", nn::Linear(vit->options().hidden_dim, spec_value<int64_t>(spec, "num_classes", 0)));
  }

  ModelOutput forward_head(const Features& features, BackboneImpl& backbone) override {
    auto* vit = dynamic_cast<VisionTransformerImpl*>(&backbone);
    if (!vit) throw Error("the transfg head needs a Vision Transformer backbone");
    if (!vit->keeping_last_layer_input())
      throw Error("the transfg head needs its backbone built with it (build_classifier)");
    const auto& kept = vit->last_layer_input(features);
    const torch::Tensor& tokens = kept.tokens;  // [B, T, D]
    const int64_t b = tokens.size(0), dim = tokens.size(2);
    torch::Tensor patches = class_token_rollout(kept.attention).slice(2, 1);  // [B, heads, T-1]
    torch::Tensor selected = patches.argmax(2) + 1;  // token indices, [B, heads]
    torch::Tensor parts = tokens.gather(1, selected.unsqueeze(2).expand({-1, -1, dim}));
    torch::Tensor x = torch::cat({tokens.slice(1, 0, 1), parts}, 1);
    ViTEncoderBlock last_layer = vit->layers().back();  // a holder of the backbone's layer
    x = vit->final_norm()(last_layer->forward(x));
    torch::Tensor cls = x.select(1, 0);
    const torch::Tensor& map = features.stages.back();
    ModelOutput out;
    out.logits = fc(dropout(cls));
    out.embedding = cls;
    out.attention = patches.reshape({b, -1, map.size(2), map.size(3)}).to(cls.dtype());
    return out;
  }

  int64_t embedding_dim() const override { return fc->options.in_features(); }
  double default_clip_grad_norm() const override { return 1.0; }

 private:
  nn::Dropout dropout{nullptr};
  nn::Linear fc{nullptr};
};

FINCH_REGISTER_HEAD({"transfg",
                     "TransFG (He et al. 2022), ViT backbones only: the tokens the attention of "
                     "layers 1..L-1 points the class token to, per head, through the last layer",
                     [](const ModelSpec& spec, const BackboneImpl& backbone) {
                       return std::make_shared<TransFGHeadImpl>(spec, backbone);
                     },
                     {}});

}  // namespace

}  // namespace finch::models
