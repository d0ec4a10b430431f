// The plain head: the backbone's pooled embedding (global average pooling; fc6/fc7 for VGG)
// + dropout + linear classifier. Its classifier is named `fc`, as in torchvision's ResNet.
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>

#include "finch/models/registry.h"

namespace finch::models {

namespace {

class LinearHeadImpl : public HeadImpl {
 public:
  LinearHeadImpl(int64_t in_features, int64_t num_classes, double dropout)
      : dropout_(register_module("dropout", torch::nn::Dropout(dropout))),
        fc(register_module("fc", torch::nn::Linear(in_features, num_classes))) {}

  ModelOutput forward_head(const Features& features, BackboneImpl& backbone) override {
    return forward_embedding(backbone.embed(features));
  }
  bool uses_embedding_only() const override { return true; }
  ModelOutput forward_embedding(const torch::Tensor& embedding) override {
    return {fc(dropout_(embedding)), embedding, {}};
  }

  int64_t embedding_dim() const override { return fc->options.in_features(); }

 private:
  torch::nn::Dropout dropout_;
  torch::nn::Linear fc;
};

FINCH_REGISTER_HEAD(
    {"linear",
     "torchvision's classifier: dropout (model.dropout) + one fully connected layer "
     "on the pooled embedding",
     [](const ModelSpec& spec, const BackboneImpl& backbone) {
       return std::make_shared<LinearHeadImpl>(backbone.embedding_dim(),
                                               spec_value<int64_t>(spec, "num_classes", 0),
                                               spec_value<double>(spec, "dropout", 0.0));
     }});

}  // namespace

}  // namespace finch::models
