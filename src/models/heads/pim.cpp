// Selection + combination head in the spirit of FGVC-PIM (Chou, Kao, Lin, "A Novel Plug-in
// Module for Fine-Grained Visual Classification", arXiv:2202.03822, 2022), over several stages
// of any backbone (ResNet, ConvNeXt, Swin, ViT, ...):
//  - each chosen stage's map is projected to `dim` channels (1x1 conv + BN) and its positions
//    become tokens; a per-stage linear classifier scores every token;
//  - selection: the `select` share of each stage's tokens with the highest top-class
//    probability are kept (the weakly supervised selector; at least one per stage);
//  - combination: the kept tokens of all stages are one set, mixed by a graph layer whose
//    adjacency is computed from the tokens (softmax of scaled dot products, plus the identity),
//    H = X + ReLU(LayerNorm(A X W)); their mean is the embedding, classified by `fc`;
//  - in training the mean token logits of the stages are the auxiliary logits (their cross-
//    entropy is added with train.aux_loss_weight), which trains the selectors.
// Differences from the paper, on purpose: no top-down feature pyramid, an attention-style
// adjacency instead of PIM's pooled-joint GCN (whose joint count is tied to one input size),
// and no loss on the dropped tokens. Options in `model.pim`: stages ([-3, -2, -1], counted from
// the end when negative), dim (256), select (0.25). Attention maps: the last stage's token
// confidence [B, 1, h, w].
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "finch/core/error.h"
#include "finch/models/batchnorm.h"
#include "finch/models/blocks.h"
#include "finch/models/registry.h"

namespace finch::models {

namespace {

namespace nn = torch::nn;

std::vector<size_t> resolve_stages(const ModelSpec& options, const BackboneImpl& backbone) {
  const auto count = static_cast<int64_t>(backbone.stage_channels().size());
  const auto listed = spec_value<std::vector<int64_t>>(options, "stages", {-3, -2, -1});
  if (listed.empty()) throw Error("model.pim.stages is empty: list stages, e.g. [-3, -2, -1]");
  std::vector<size_t> stages;
  for (int64_t s : listed) {
    const size_t stage = resolve_stage_number(s, count, "model.pim.stages");
    if (std::find(stages.begin(), stages.end(), stage) != stages.end())
      throw Error("model.pim.stages lists stage " + std::to_string(stage) + " twice");
    stages.push_back(stage);
  }
  return stages;
}

class PimHeadImpl : public HeadImpl {
 public:
  PimHeadImpl(const ModelSpec& spec, const BackboneImpl& backbone) {
    const ModelSpec options = spec_section(spec, "pim");
    stages_ = resolve_stages(options, backbone);
    dim_ = spec_value<int64_t>(options, "dim", 256);
    select_ = spec_value<double>(options, "select", 0.25);
    if (dim_ < 1) throw Error("model.pim.dim must be >= 1");
    if (!(select_ > 0 && select_ <= 1)) throw Error("model.pim.select must be in (0, 1]");
    const int64_t classes = spec_value<int64_t>(spec, "num_classes", 0);
    const auto channels = backbone.stage_channels();
    auto projections = register_module("project", nn::ModuleList());
    auto scorers = register_module("score", nn::ModuleList());
    for (size_t stage : stages_) {
      auto conv =
          nn::Sequential(nn::Conv2d(nn::Conv2dOptions(channels[stage - 1], dim_, 1).bias(false)),
                         BatchNorm2d(dim_));
      project_.push_back(conv);
      projections->push_back(conv);
      score_.push_back(nn::Linear(dim_, classes));
      scorers->push_back(score_.back());
    }
    query = register_module("query", nn::Linear(dim_, dim_));
    key = register_module("key", nn::Linear(dim_, dim_));
    graph = register_module("graph", nn::Linear(dim_, dim_));
    norm = register_module("norm", nn::LayerNorm(nn::LayerNormOptions({dim_})));
    dropout = register_module("dropout", nn::Dropout(spec_value<double>(spec, "dropout", 0.0)));
    fc = register_module("fc", nn::Linear(dim_, classes));
  }

  ModelOutput forward_head(const Features& features, BackboneImpl&) override {
    std::vector<torch::Tensor> kept, stage_logits;
    torch::Tensor last_confidence;
    int64_t last_h = 0, last_w = 0;
    for (size_t i = 0; i < stages_.size(); ++i) {
      const torch::Tensor& map = features.stages.at(stages_[i] - 1);
      torch::Tensor x = project_[i]->forward(map);  // [B, D, h, w]
      const int64_t b = x.size(0), h = x.size(2), w = x.size(3), n = h * w;
      torch::Tensor tokens = x.flatten(2).transpose(1, 2);  // [B, n, D]
      torch::Tensor logits = score_[i]->forward(tokens);    // [B, n, C]
      stage_logits.push_back(logits.mean(1));
      torch::Tensor confidence = std::get<0>(torch::softmax(logits, -1).max(-1));  // [B, n]
      const int64_t k = std::max<int64_t>(
          1, std::min<int64_t>(n, std::llround(select_ * static_cast<double>(n))));
      torch::Tensor index = std::get<1>(confidence.detach().topk(k, 1));  // [B, k]
      kept.push_back(tokens.gather(1, index.unsqueeze(-1).expand({b, k, dim_})));
      last_confidence = confidence;
      last_h = h, last_w = w;
    }
    torch::Tensor x = torch::cat(kept, 1);  // [B, N, D]
    const double scale = 1.0 / std::sqrt(static_cast<double>(dim_));
    torch::Tensor adjacency =
        torch::softmax(torch::matmul(query(x), key(x).transpose(1, 2)) * scale, -1);
    // Keep each token's own features. (torch::eye has no bf16 kernel: made in fp32, cast.)
    adjacency = 0.5 * adjacency + 0.5 * torch::eye(x.size(1), x.options().dtype(torch::kFloat))
                                            .to(x.scalar_type())
                                            .unsqueeze(0);
    x = x + torch::relu(norm(graph(torch::matmul(adjacency, x))));
    ModelOutput out;
    out.embedding = x.mean(1);
    out.logits = fc(dropout(out.embedding));
    if (is_training()) out.aux_logits = torch::stack(stage_logits).mean(0);
    out.attention = last_confidence.reshape({-1, 1, last_h, last_w});
    return out;
  }

  int64_t embedding_dim() const override { return dim_; }
  bool uses_earlier_stages() const override { return true; }
  double default_clip_grad_norm() const override { return 1.0; }

 private:
  std::vector<size_t> stages_;
  int64_t dim_ = 256;
  double select_ = 0.25;
  std::vector<nn::Sequential> project_;
  std::vector<nn::Linear> score_;
  nn::Linear query{nullptr}, key{nullptr}, graph{nullptr};
  nn::LayerNorm norm{nullptr};
  nn::Dropout dropout{nullptr};
  nn::Linear fc{nullptr};
};

FINCH_REGISTER_HEAD(
    {"pim",
     "selection + combination over several stages in the spirit of FGVC-PIM (Chou "
     "et al. 2022): per-stage token classifiers select the most confident "
     "positions, a graph layer combines them",
     [](const ModelSpec& spec, const BackboneImpl& backbone) {
       return std::make_shared<PimHeadImpl>(spec, backbone);
     },
     {{"model.pim",
       R"(stages: [-3, -2, -1]   # stages whose positions are candidates (negative: from the end)
dim: 256       # token width (1x1 projection of each stage)
select: 0.25   # share of each stage's positions kept by the selector)"}}});

}  // namespace

}  // namespace finch::models
