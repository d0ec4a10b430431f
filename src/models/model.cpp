#include "finch/models/model.h"

#include <torch/torch.h>

#include <map>
#include <set>

#include "finch/core/error.h"
#include "finch/core/threads.h"
#include "finch/models/blocks.h"
#include "finch/models/registry.h"

namespace finch::models {

ClassifierImpl::ClassifierImpl(std::shared_ptr<BackboneImpl> backbone,
                               std::shared_ptr<HeadImpl> head)
    : backbone_(register_module("backbone", std::move(backbone))),
      head_(register_module("head", std::move(head))) {}

void BackboneImpl::insert_after_stage(size_t stage, std::shared_ptr<StageBlockImpl> block) {
  const size_t stages = stage_channels().size();
  if (stage < 1 || stage > stages)
    throw Error("model.attention.stages: stage " + std::to_string(stage) +
                " does not exist (the backbone has stages 1-" + std::to_string(stages) + ")");
  if (!blocks_holder_)
    blocks_holder_ = register_module("attention", std::make_shared<torch::nn::Module>());
  if (blocks_.count(stage))
    throw Error("model.attention.stages lists stage " + std::to_string(stage) + " twice");
  blocks_[stage] = blocks_holder_->register_module(std::to_string(stage), std::move(block));
}

torch::Tensor BackboneImpl::after_stage(size_t stage, torch::Tensor x) {
  auto it = blocks_.find(stage);
  return it == blocks_.end() ? x : it->second->forward(x);
}

torch::Tensor BackboneImpl::embed(const Features& features) {
  return features.stages.back().mean({2, 3});
}

ModelOutput HeadImpl::forward_embedding(const torch::Tensor&) {
  throw Error(
      "this head classifies stage feature maps, not a pooled embedding; "
      "train.cache_features needs model.head: linear");
}

ModelOutput ClassifierImpl::forward(const torch::Tensor& images) {
  TORCH_CHECK(images.dim() == 4 && images.size(1) == 3,
              "classifier expects [B, 3, H, W] images, got ", images.sizes());
  Features features = backbone_->forward_features(images);
  ModelOutput output = head_->forward_head(features, *backbone_);
  if (!output.aux_logits.defined()) output.aux_logits = features.aux_logits;
  if (!is_training()) {
    torch::Tensor view = head_->refinement_view(images, output);
    if (view.defined()) {
      ModelOutput second = head_->forward_head(backbone_->forward_features(view), *backbone_);
      output.logits = (output.logits + second.logits) / 2;
    }
  }
  return output;
}

void set_blas_threads_for(const Classifier& model) {
  set_blas_threads(model->backbone()->matmul_bound() ? torch::get_num_threads() : 1);
}

Classifier build_classifier(const ModelSpec& spec) {
  const int64_t num_classes = spec_value<int64_t>(spec, "num_classes", 0);
  if (num_classes < 1)
    throw Error("model.num_classes must be >= 1, got " + std::to_string(num_classes));
  auto backbone = build_backbone(spec);
  insert_attention_blocks(*backbone, spec);
  auto head = build_head(spec, *backbone);
  return Classifier(backbone, head);
}

std::vector<std::pair<std::string, torch::Tensor>> state_dict(const torch::nn::Module& module) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& item : module.named_parameters(/*recurse=*/true))
    out.emplace_back(item.key(), item.value());
  for (const auto& item : module.named_buffers(/*recurse=*/true))
    out.emplace_back(item.key(), item.value());
  return out;
}

void load_state_dict(torch::nn::Module& module,
                     const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                     const std::string& source) {
  std::map<std::string, torch::Tensor> given(tensors.begin(), tensors.end());
  std::vector<std::string> missing, mismatched;
  std::set<std::string> used;
  auto targets = state_dict(module);
  for (auto& [name, target] : targets) {
    auto it = given.find(name);
    if (it == given.end()) {
      missing.push_back(name);
      continue;
    }
    used.insert(name);
    if (it->second.sizes() != target.sizes()) {
      std::ostringstream msg;
      msg << name << " (expected " << target.sizes() << ", found " << it->second.sizes() << ")";
      mismatched.push_back(msg.str());
    }
  }
  std::vector<std::string> unexpected;
  for (const auto& kv : given) {
    if (!used.count(kv.first)) unexpected.push_back(kv.first);
  }
  if (!missing.empty() || !unexpected.empty() || !mismatched.empty()) {
    auto list = [](const std::vector<std::string>& v) {
      std::string s;
      for (size_t i = 0; i < v.size() && i < 8; ++i) s += (i ? ", " : "") + v[i];
      if (v.size() > 8) s += ", ... (" + std::to_string(v.size()) + " in all)";
      return s;
    };
    std::string msg = source + ": weights do not match the model architecture;";
    if (!missing.empty()) msg += " missing: " + list(missing) + ";";
    if (!unexpected.empty()) msg += " unexpected: " + list(unexpected) + ";";
    if (!mismatched.empty()) msg += " shape mismatch: " + list(mismatched) + ";";
    throw Error(msg);
  }
  torch::NoGradGuard no_grad;
  for (auto& [name, target] : targets) {
    target.copy_(given.at(name).to(target.dtype()));
  }
}

}  // namespace finch::models
