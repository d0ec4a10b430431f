#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/torch.h>

#include "finch/core/error.h"
#include "finch/core/registry.h"
#include "finch/models/blocks.h"

namespace finch::models {

namespace {

namespace nn = torch::nn;

// The shared two-layer bottleneck MLP of SE and CBAM's channel attention (1x1 convs on pooled
// [B, C, 1, 1] maps: fc1 -> ReLU -> fc2).
class ChannelMlpImpl : public nn::Module {
 public:
  ChannelMlpImpl(int64_t channels, int64_t reduction) {
    const int64_t hidden = std::max<int64_t>(1, channels / reduction);
    fc1 = register_module("fc1", nn::Conv2d(nn::Conv2dOptions(channels, hidden, 1)));
    fc2 = register_module("fc2", nn::Conv2d(nn::Conv2dOptions(hidden, channels, 1)));
  }
  torch::Tensor forward(const torch::Tensor& pooled) { return fc2(fc1(pooled).relu()); }

 private:
  nn::Conv2d fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(ChannelMlp);

class GatedBlock : public StageBlockImpl {
 public:
  GatedBlock() { gamma = register_parameter("gamma", torch::zeros({1})); }
  torch::Tensor forward(const torch::Tensor& x) override { return x + gamma * (attend(x) - x); }
  /// The published block's output.
  virtual torch::Tensor attend(const torch::Tensor& x) = 0;

 private:
  torch::Tensor gamma;
};

// x * sigmoid(MLP(avgpool(x))).
class SqueezeExcitation final : public GatedBlock {
 public:
  SqueezeExcitation(int64_t channels, int64_t reduction)
      : mlp(register_module("mlp", ChannelMlp(channels, reduction))) {}
  torch::Tensor attend(const torch::Tensor& x) override {
    return x * torch::sigmoid(mlp(x.mean({2, 3}, /*keepdim=*/true)));
  }

 private:
  ChannelMlp mlp;
};

// Channel attention sigmoid(MLP(avgpool) + MLP(maxpool)), then spatial attention
// sigmoid(conv7x7([mean over channels, max over channels])) on the result.
class Cbam final : public GatedBlock {
 public:
  Cbam(int64_t channels, int64_t reduction)
      : mlp(register_module("mlp", ChannelMlp(channels, reduction))),
        spatial(register_module("spatial",
                                nn::Conv2d(nn::Conv2dOptions(2, 1, 7).padding(3).bias(false)))) {}
  torch::Tensor attend(const torch::Tensor& x) override {
    torch::Tensor channel = torch::sigmoid(mlp(x.mean({2, 3}, true)) + mlp(x.amax({2, 3}, true)));
    torch::Tensor y = x * channel;
    torch::Tensor pooled = torch::cat({y.mean(1, true), y.amax(1, true)}, 1);
    return y * torch::sigmoid(spatial(pooled));
  }

 private:
  ChannelMlp mlp;
  nn::Conv2d spatial;
};

using BlockBuilder =
    std::function<std::shared_ptr<StageBlockImpl>(int64_t channels, int64_t reduction)>;

Registry<BlockBuilder>& blocks() {
  static Registry<BlockBuilder> registry("attention", "attention block", "model.attention.type");
  static const bool filled = [] {
    auto& r = registry;
    r.add({"se", "squeeze-and-excitation (Hu et al. 2018): channel gates from a pooled MLP",
           [](int64_t channels, int64_t reduction) {
             return std::make_shared<SqueezeExcitation>(channels, reduction);
           }});
    r.add({"cbam",
           "CBAM (Woo et al. 2018): channel gates (mean + max pooled MLP), then a 7x7 spatial gate",
           [](int64_t channels, int64_t reduction) {
             return std::make_shared<Cbam>(channels, reduction);
           }});
    return true;
  }();
  (void)filled;
  return registry;
}
// Built at load time, so `finch list`, `--help` and the config schema see every entry.
[[maybe_unused]] const bool kBlocksRegistered = (blocks(), true);

}  // namespace

std::shared_ptr<StageBlockImpl> make_stage_block(const std::string& type, int64_t channels,
                                                 int64_t reduction) {
  if (reduction < 1) throw Error("model.attention.reduction must be >= 1");
  return blocks().factory(type)(channels, reduction);
}

size_t resolve_stage_number(int64_t listed, int64_t count, const std::string& key) {
  // Negative numbers count from the end, so one list fits backbones with three stages (CIFAR
  // ResNets) and with four or five.
  const int64_t stage = listed < 0 ? count + 1 + listed : listed;
  if (listed == 0 || stage < 1 || stage > count)
    throw Error(key + ": stage " + std::to_string(listed) +
                " does not exist (the backbone has stages 1-" + std::to_string(count) + ", or -" +
                std::to_string(count) + "..-1 counting from the end)");
  return static_cast<size_t>(stage);
}

void insert_attention_blocks(BackboneImpl& backbone, const ModelSpec& spec) {
  if (!spec.contains("attention") || spec["attention"].is_null()) return;
  const auto& section = spec["attention"];
  if (!section.is_object())
    throw Error("model.attention must be a map {type, stages, reduction}, got " + section.dump());
  const std::string type = section.value("type", std::string("none"));
  if (type == "none") return;
  const auto channels = backbone.stage_channels();
  std::vector<int64_t> stages;
  try {
    stages = section.value("stages", std::vector<int64_t>{});
  } catch (const std::exception&) {
    throw Error("model.attention.stages must be a list of stage numbers, got " +
                section["stages"].dump());
  }
  if (stages.empty())
    throw Error("model.attention.stages is empty: list the stages to follow with " + type +
                " blocks, e.g. [-2, -1] (the last two)");
  const auto count = static_cast<int64_t>(channels.size());
  for (int64_t listed : stages) {
    const size_t stage = resolve_stage_number(listed, count, "model.attention.stages");
    backbone.insert_after_stage(
        stage, make_stage_block(type, channels[stage - 1], section.value("reduction", 16)));
  }
}

}  // namespace finch::models
