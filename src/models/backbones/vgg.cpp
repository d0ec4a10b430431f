// VGG-11/13/16/19, with and without batch norm, with torchvision's names (features.<i>,
// classifier.0 / classifier.3 for fc6 / fc7; torchvision's classifier.6 is finch's head.fc).
// Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
// Recognition", ICLR 2015.
//
// Stages are the activations just before each max-pool (conv1_2 ... conv5_3 after ReLU): the
// maps bilinear and attention heads use (B-CNN pools relu5_3). embed() applies pool5, the 7x7
// adaptive average pool and fc6/fc7 as torchvision does; `model.vgg_fc: false` drops fc6/fc7
// (120 M parameters) and embeds by global average pooling of conv5 instead.
#include <torch/nn/init.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/pooling.h>

#include <map>

#include "finch/models/batchnorm.h"
#include "finch/models/registry.h"
#include "finch/models/weight_init.h"

namespace finch::models {

namespace {

namespace nn = torch::nn;

constexpr int64_t kPool = 0;  // "M" in torchvision's configuration lists

const std::map<std::string, std::vector<int64_t>>& vgg_configs() {
  static const std::map<std::string, std::vector<int64_t>> configs = {
      {"vgg11", {64, kPool, 128, kPool, 256, 256, kPool, 512, 512, kPool, 512, 512, kPool}},
      {"vgg13",
       {64, 64, kPool, 128, 128, kPool, 256, 256, kPool, 512, 512, kPool, 512, 512, kPool}},
      {"vgg16",
       {64, 64, kPool, 128, 128, kPool, 256, 256, 256, kPool, 512, 512, 512, kPool, 512, 512, 512,
        kPool}},
      {"vgg19", {64,  64,  kPool, 128, 128,   kPool, 256, 256, 256, 256,  kPool,
                 512, 512, 512,   512, kPool, 512,   512, 512, 512, kPool}}};
  return configs;
}

class VggImpl : public BackboneImpl {
 public:
  VggImpl(const std::vector<int64_t>& config, bool batch_norm, bool with_fc) {
    features_ = register_module("features", nn::Sequential());
    int64_t in = 3;
    std::vector<std::string> stage;
    for (int64_t channels : config) {
      const std::string index = std::to_string(features_->size());
      if (channels == kPool) {
        pool_indices_.push_back(features_->size());
        features_->push_back(nn::MaxPool2d(nn::MaxPool2dOptions(2).stride(2)));
        prefixes_.push_back(std::move(stage));
        stage.clear();
        continue;
      }
      stage.push_back("features." + index);
      features_->push_back(nn::Conv2d(nn::Conv2dOptions(in, channels, 3).padding(1)));
      if (batch_norm) {
        stage.push_back("features." + std::to_string(features_->size()));
        features_->push_back(BatchNorm2d(channels));
      }
      features_->push_back(nn::ReLU(nn::ReLUOptions(true)));
      in = channels;
    }
    num_features_ = in;
    for (size_t i = 1; i < config.size(); ++i) {
      if (config[i] == kPool) stage_channels_.push_back(config[i - 1]);
    }
    if (with_fc) {
      classifier_ =
          register_module("classifier", nn::Sequential(nn::Linear(in * 7 * 7, 4096), nn::ReLU(true),
                                                       nn::Dropout(0.5), nn::Linear(4096, 4096),
                                                       nn::ReLU(true), nn::Dropout(0.5)));
    }
    // torchvision's initialisation.
    if (!random_init_enabled()) return;
    for (auto& module : modules(/*include_self=*/false)) {
      if (auto* conv = module->as<nn::Conv2d>()) {
        nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanOut, torch::kReLU);
        nn::init::zeros_(conv->bias);
      } else if (auto* bn = module->as<nn::BatchNorm2d>()) {
        nn::init::ones_(bn->weight);
        nn::init::zeros_(bn->bias);
      } else if (auto* linear = module->as<nn::Linear>()) {
        nn::init::normal_(linear->weight, 0.0, 0.01);
        nn::init::zeros_(linear->bias);
      }
    }
  }

  Features forward_features(const torch::Tensor& images) override {
    Features out;
    torch::Tensor x = images;
    size_t index = 0, next_pool = 0;
    for (auto& layer : *features_) {
      // The last pool belongs to embed(): the last stage stays at conv5 resolution.
      if (next_pool < pool_indices_.size() && index == pool_indices_[next_pool]) {
        x = after_stage(next_pool + 1, x);
        out.stages.push_back(x);
        ++next_pool;
        if (next_pool == pool_indices_.size()) break;
      }
      x = layer.forward(x);
      ++index;
    }
    return out;
  }

  torch::Tensor embed(const Features& features) override {
    if (!classifier_) return BackboneImpl::embed(features);
    torch::Tensor x = torch::max_pool2d(features.stages.back(), 2, 2);
    x = torch::adaptive_avg_pool2d(x, {7, 7}).flatten(1);
    return classifier_->forward(x);
  }

  int64_t num_features() const override { return num_features_; }
  int64_t embedding_dim() const override { return classifier_ ? 4096 : num_features_; }
  std::vector<std::vector<std::string>> stage_prefixes() const override { return prefixes_; }
  std::string torchvision_classifier() const override { return "classifier.6"; }
  int64_t output_stride() const override { return 16; }  // conv5_3, before pool5
  std::vector<int64_t> stage_channels() const override { return stage_channels_; }

 private:
  nn::Sequential features_{nullptr}, classifier_{nullptr};
  std::vector<size_t> pool_indices_;
  std::vector<int64_t> stage_channels_;
  std::vector<std::vector<std::string>> prefixes_;
  int64_t num_features_ = 0;
};

bool register_vggs() {
  for (const auto& [name, config] : vgg_configs()) {
    for (bool bn : {false, true}) {
      backbones().add(
          {name + (bn ? "_bn" : ""),
           fmt::format("{} (Simonyan & Zisserman 2015){}, torchvision's names; stages end at the "
                       "max-pools",
                       name == "vgg11"   ? "VGG-11"
                       : name == "vgg13" ? "VGG-13"
                       : name == "vgg16" ? "VGG-16"
                                         : "VGG-19",
                       bn ? " with BatchNorm" : ""),
           [config = config, bn](const ModelSpec& spec) {
             return std::make_shared<VggImpl>(config, bn, spec_value<bool>(spec, "vgg_fc", true));
           },
           {{"model",
             "vgg_fc: true   # vgg*: keep fc6/fc7 (torchvision); false = global average pool of "
             "conv5"}}});
    }
  }
  return true;
}

const bool kVggsRegistered = register_vggs();

}  // namespace

}  // namespace finch::models
