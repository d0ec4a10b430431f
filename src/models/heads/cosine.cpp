// The normalised-softmax head of CosFace / ArcFace and of "Classification is a strong baseline
// for deep metric learning" (Zhai & Wu 2019): logits = scale x cos(embedding, class weight),
// so the classifier ranks classes by angle only and the embedding it trains is the one that
// retrieval and galleries search by cosine. The margin losses (train.losses: cosface |
// arcface) adjust the target logit during training; eval logits are the plain scaled cosines.
#include <torch/nn/functional/normalization.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/linear.h>

#include "finch/models/registry.h"

namespace finch::models {

namespace {

namespace F = torch::nn::functional;

class CosineHeadImpl : public HeadImpl {
 public:
  CosineHeadImpl(int64_t in_features, int64_t num_classes, double scale)
      : fc(register_module(
            "fc",
            torch::nn::Linear(torch::nn::LinearOptions(in_features, num_classes).bias(false)))),
        scale_(scale) {
    if (!(scale > 0)) throw Error("model.cosine_scale must be > 0");
  }

  ModelOutput forward_head(const Features& features, BackboneImpl& backbone) override {
    return forward_embedding(backbone.embed(features));
  }
  bool uses_embedding_only() const override { return true; }
  ModelOutput forward_embedding(const torch::Tensor& embedding) override {
    const auto unit = F::NormalizeFuncOptions().dim(1).eps(1e-12);
    torch::Tensor cosine =
        torch::matmul(F::normalize(embedding, unit), F::normalize(fc->weight, unit).t());
    return {scale_ * cosine, embedding, {}};
  }
  int64_t embedding_dim() const override { return fc->options.in_features(); }

 private:
  torch::nn::Linear fc;
  double scale_;
};

FINCH_REGISTER_HEAD(
    {"cosine",
     "normalised softmax (Zhai & Wu 2019): scale x cos(embedding, class weight); for CosFace / "
     "ArcFace losses and retrieval",
     [](const ModelSpec& spec, const BackboneImpl& backbone) {
       return std::make_shared<CosineHeadImpl>(backbone.embedding_dim(),
                                               spec_value<int64_t>(spec, "num_classes", 0),
                                               spec_value<double>(spec, "cosine_scale", 30.0));
     },
     {{"model",
       "cosine_scale: 30.0   # logits = scale x cos(embedding, class weight) (CosFace / ArcFace "
       "s)"}}});

}  // namespace

}  // namespace finch::models
