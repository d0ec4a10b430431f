// The plain head: the backbone's pooled embedding (global average pooling; fc6/fc7 for VGG)
// + dropout + linear classifier. Its classifier is named `fc`, as in torchvision's ResNet.
// `model.linear.hidden: [256, 128]` puts fully connected + ReLU + dropout layers before `fc`
// (`mlp.0`, `mlp.3`, ...): the classifier stacks Keras models often end with (imported TF.js
// models, models/keras_import.h).
#include <fmt/format.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>

#include "finch/core/error.h"
#include "finch/models/registry.h"

namespace finch::models {

namespace {

class LinearHeadImpl : public HeadImpl {
 public:
  LinearHeadImpl(int64_t in_features, const std::vector<int64_t>& hidden, int64_t num_classes,
                 double dropout)
      : dropout_(register_module("dropout", torch::nn::Dropout(dropout))),
        embedding_dim_(in_features) {
    int64_t width = in_features;
    if (!hidden.empty()) {
      mlp_ = register_module("mlp", torch::nn::Sequential());
      for (int64_t units : hidden) {
        if (units < 1) throw Error(fmt::format("model.linear.hidden: {} is not a width", units));
        mlp_->push_back(torch::nn::Linear(width, units));
        mlp_->push_back(torch::nn::ReLU());
        mlp_->push_back(torch::nn::Dropout(dropout));
        width = units;
      }
    }
    fc = register_module("fc", torch::nn::Linear(width, num_classes));
  }

  ModelOutput forward_head(const Features& features, BackboneImpl& backbone) override {
    return forward_embedding(backbone.embed(features));
  }
  bool uses_embedding_only() const override { return true; }
  ModelOutput forward_embedding(const torch::Tensor& embedding) override {
    torch::Tensor x = dropout_(embedding);
    if (mlp_) x = mlp_->forward(x);
    return {fc(x), embedding, {}};
  }

  int64_t embedding_dim() const override { return embedding_dim_; }

 private:
  torch::nn::Dropout dropout_;
  torch::nn::Sequential mlp_{nullptr};
  torch::nn::Linear fc{nullptr};
  int64_t embedding_dim_;
};

FINCH_REGISTER_HEAD(
    {"linear",
     "torchvision's classifier: dropout (model.dropout) + one fully connected layer "
     "on the pooled embedding (after model.linear.hidden fully connected + ReLU layers, if any)",
     [](const ModelSpec& spec, const BackboneImpl& backbone) {
       return std::make_shared<LinearHeadImpl>(
           backbone.embedding_dim(),
           spec_value<std::vector<int64_t>>(spec_section(spec, "linear"), "hidden", {}),
           spec_value<int64_t>(spec, "num_classes", 0), spec_value<double>(spec, "dropout", 0.0));
     },
     {{"model.linear",
       "hidden: []   # widths of fully connected + ReLU layers before the classifier (Keras-style "
       "classifier stacks)"}}});

}  // namespace

}  // namespace finch::models
