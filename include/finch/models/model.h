#pragma once
// A classifier is a backbone (image -> stage feature maps) followed by a head (stage maps
// -> logits + embedding). Backbones and heads are registered by name (models/registry.h);
// a new method is a new head, with no change to the trainer.
#include <torch/nn/module.h>
#include <torch/types.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace finch::models {

/// Everything a model returns, by name (never a tuple whose order must be remembered).
struct ModelOutput {
  torch::Tensor logits;     // [B, num_classes]
  torch::Tensor embedding;  // [B, D] pooled feature the classifier sees
};

class BackboneImpl : public torch::nn::Module {
 public:
  /// [B, 3, H, W] -> the feature map of every stage, shallow to deep ([B, C_i, H_i, W_i]).
  virtual std::vector<torch::Tensor> forward_stages(const torch::Tensor& images) = 0;
  /// Channels of the last stage's feature map.
  virtual int64_t num_features() const = 0;
};

class HeadImpl : public torch::nn::Module {
 public:
  /// Stage maps from the backbone -> logits and embedding.
  virtual ModelOutput forward_head(const std::vector<torch::Tensor>& stages) = 0;
};

class ClassifierImpl : public torch::nn::Module {
 public:
  ClassifierImpl(std::shared_ptr<BackboneImpl> backbone, std::shared_ptr<HeadImpl> head);
  /// [B, 3, H, W] -> logits and embedding.
  ModelOutput forward(const torch::Tensor& images);
  std::shared_ptr<BackboneImpl> backbone() const { return backbone_; }
  std::shared_ptr<HeadImpl> head() const { return head_; }

 private:
  std::shared_ptr<BackboneImpl> backbone_;
  std::shared_ptr<HeadImpl> head_;
};
TORCH_MODULE(Classifier);

/// Architecture description: the `model` section of a config as JSON (backbone, head,
/// num_classes, dropout, width, input_size, ...). Stored in model files.
using ModelSpec = nlohmann::json;

/// Builds an untrained classifier from a spec; throws finch::Error for unknown names.
Classifier build_classifier(const ModelSpec& spec);

/// Parameters and buffers by name, in registration order (torchvision's names).
std::vector<std::pair<std::string, torch::Tensor>> state_dict(const torch::nn::Module& module);

/// Copies `tensors` into the module's parameters and buffers. Every name must match and
/// every shape must agree; otherwise throws finch::Error listing missing, unexpected and
/// mismatched keys.
void load_state_dict(torch::nn::Module& module,
                     const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                     const std::string& source);

}  // namespace finch::models
