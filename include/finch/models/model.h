#pragma once
// A classifier is a backbone (image -> stage feature maps) followed by a head (stage maps
// -> logits + embedding). Backbones and heads are registered by name (models/registry.h);
// a new method is a new head, with no change to the trainer.
#include <torch/nn/module.h>
#include <torch/types.h>

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "finch/core/rng.h"

namespace finch::models {

namespace int8 {
class Calibration;
}

/// What a backbone computes for a batch.
struct Features {
  std::vector<torch::Tensor> stages;  // feature map of every stage, shallow to deep [B, C, H, W]
  torch::Tensor aux_logits;  // Inception-v3's auxiliary classifier in training mode, else undefined
};

/// Everything a model returns, by name (never a tuple whose order must be remembered).
struct ModelOutput {
  torch::Tensor logits;      // [B, num_classes]
  torch::Tensor embedding;   // [B, D] pooled feature the classifier sees
  torch::Tensor aux_logits;  // auxiliary logits to add to the loss in training, or undefined
  torch::Tensor attention;  // [B, M, h, w] attention maps of attention / WS-DAN heads, or undefined
};

/// A block inserted after a backbone stage (SE, CBAM): [B, C, H, W] -> same shape.
class StageBlockImpl : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(const torch::Tensor& x) = 0;
};

class BackboneImpl : public torch::nn::Module {
 public:
  /// [B, 3, H, W] -> stage feature maps (and auxiliary logits where the architecture has them).
  virtual Features forward_features(const torch::Tensor& images) = 0;
  /// Channels of the last stage's feature map.
  virtual int64_t num_features() const = 0;
  /// The pooled embedding torchvision's classifier sees: by default the global average of
  /// the last stage; VGG applies its fc6/fc7 layers.
  virtual torch::Tensor embed(const Features& features);
  /// Size of embed()'s output.
  virtual int64_t embedding_dim() const { return num_features(); }
  /// Parameter-name prefixes of each stage, shallow to deep (the stem belongs to the first):
  /// what `train.freeze: N` freezes.
  virtual std::vector<std::vector<std::string>> stage_prefixes() const = 0;
  /// torchvision's name of this architecture's final classifier ("fc", "classifier.6"):
  /// pretrained files name the head this way.
  virtual std::string torchvision_classifier() const { return "fc"; }
  /// Tensors whose shape follows the number of classes (Inception's auxiliary classifier):
  /// re-initialised, like the head, when pretrained weights have another class count.
  virtual std::vector<std::string> class_dependent_tensors() const { return {}; }
  /// Input pixels per cell of the last stage's map (32 for ResNet-50: 448 px -> 14 x 14).
  virtual int64_t output_stride() const { return 32; }
  /// Channels of each stage's map, shallow to deep.
  virtual std::vector<int64_t> stage_channels() const = 0;
  /// A pretrained tensor whose shape differs from this model's `name` made to fit, or an
  /// undefined tensor when there is no rule (then the mismatch is reported). ViT resizes its
  /// position embedding for another input size.
  virtual torch::Tensor adapt_pretrained_tensor(const std::string& name,
                                                const torch::Tensor& tensor) const {
    return {};
  }
  /// Folds every BatchNorm (running statistics) into the convolution before it and removes
  /// it from the forward pass. Only for inference copies (models::optimize_for_inference);
  /// returns false when the backbone has no folding rule and keeps its BatchNorms.
  virtual bool fold_batchnorm() { return false; }
  /// After fold_batchnorm, in an fp32 inference copy: convolution weights reordered once
  /// into oneDNN's blocked layout and activations kept in it from layer to layer, so no call
  /// reorders weights again; the stage maps come back as ordinary tensors. Returns false
  /// when the backbone has no such path (then nothing changes).
  virtual bool use_onednn_layout() { return false; }
  /// Whether most of the arithmetic is matrix products (LibTorch's BLAS) rather than
  /// convolutions (oneDNN): decides how many threads BLAS gets (set_blas_threads_for).
  virtual bool matmul_bound() const { return false; }
  /// INT8 inference (models/int8.h), after fold_batchnorm in an fp32 copy: runs `images` and
  /// records the range of every activation the int8 path quantizes. Returns false when the
  /// backbone has no int8 path.
  virtual bool observe_int8(const torch::Tensor& images, int8::Calibration& calibration) {
    return false;
  }
  /// Prepacks int8 weights and takes activation scales from `calibration` (rewound, in the
  /// order observe_int8 recorded them); forward_features then runs in int8 and returns
  /// dequantized stage maps: every stage's with `every_stage`, else only the last one (the
  /// others undefined; a dequantized copy of each costs ResNet-50 15% at batch 8). Returns
  /// false when the backbone has no int8 path.
  virtual bool quantize_int8(int8::Calibration& calibration, bool every_stage) { return false; }

  /// Inserts `block` after stage `stage` (1-based); its output feeds the next stage. Its
  /// parameters are named backbone.attention.<stage>.*.
  void insert_after_stage(size_t stage, std::shared_ptr<StageBlockImpl> block);

 protected:
  /// Every backbone passes each stage's output through this (the inserted block, if any).
  torch::Tensor after_stage(size_t stage, torch::Tensor x);
  bool has_stage_blocks() const { return !blocks_.empty(); }

 private:
  std::shared_ptr<torch::nn::Module> blocks_holder_;
  std::map<size_t, std::shared_ptr<StageBlockImpl>> blocks_;
};

class HeadImpl : public torch::nn::Module {
 public:
  /// Backbone features -> logits and embedding. Heads that classify the backbone's pooled
  /// embedding call backbone.embed(features); others work on the stage maps.
  virtual ModelOutput forward_head(const Features& features, BackboneImpl& backbone) = 0;
  /// Size of ModelOutput::embedding (what metric losses and embedding maps see).
  virtual int64_t embedding_dim() const = 0;
  /// What `optim.clip_grad_norm: auto` means with this head: heads whose transformer layers or
  /// attention crops diverge at the learning rates that suit a linear head clip at 1; 0 = off.
  virtual double default_clip_grad_norm() const { return 0; }
  /// True when the head only needs backbone.embed(): its input can then be cached
  /// (`train.cache_features`) and forward_embedding() used instead.
  virtual bool uses_embedding_only() const { return false; }
  /// True when forward_head reads stages before the last one (multi-scale heads).
  virtual bool uses_earlier_stages() const { return false; }
  /// Logits from a precomputed embedding; only for heads with uses_embedding_only().
  virtual ModelOutput forward_embedding(const torch::Tensor& embedding);
  /// Extra training views of a batch (WS-DAN: attention-guided crops and drops), made from this
  /// step's output without gradients; the trainer classifies each with the batch's labels.
  virtual std::vector<torch::Tensor> training_views(const torch::Tensor& images,
                                                    const ModelOutput& output, Rng& rng) {
    return {};
  }
  /// A second look in eval mode (WS-DAN: the crop around the mean attention map), or an
  /// undefined tensor; the classifier averages the two looks' logits.
  virtual torch::Tensor refinement_view(const torch::Tensor& images, const ModelOutput& output) {
    return {};
  }
};

class ClassifierImpl : public torch::nn::Module {
 public:
  ClassifierImpl(std::shared_ptr<BackboneImpl> backbone, std::shared_ptr<HeadImpl> head);
  /// [B, 3, H, W] -> logits and embedding (and auxiliary logits in training mode).
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

/// Gives BLAS as many threads as the intra-op pool (torch::get_num_threads()) when the
/// model's backbone is matmul-bound (ViT, Swin), else one (core/threads.h says why). Call
/// it after setting the intra-op threads, before running the model.
void set_blas_threads_for(const Classifier& model);

/// Parameters and buffers by name, in registration order (torchvision's names).
std::vector<std::pair<std::string, torch::Tensor>> state_dict(const torch::nn::Module& module);

/// Copies `tensors` into the module's parameters and buffers. Every name must match and
/// every shape must agree; otherwise throws finch::Error listing missing, unexpected and
/// mismatched keys.
void load_state_dict(torch::nn::Module& module,
                     const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                     const std::string& source);

}  // namespace finch::models
