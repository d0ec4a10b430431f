#include "finch/train/losses.h"

#include <torch/torch.h>

#include "finch/core/error.h"

namespace finch::train {

namespace F = torch::nn::functional;

torch::Tensor batch_hard_triplet_loss(const torch::Tensor& embeddings, const torch::Tensor& labels,
                                      double margin) {
  // Squared distances from the Gram matrix; the clamp keeps sqrt's gradient finite at 0.
  torch::Tensor gram = torch::matmul(embeddings, embeddings.t());
  torch::Tensor norms = gram.diagonal();
  torch::Tensor dist =
      torch::sqrt((norms.unsqueeze(0) + norms.unsqueeze(1) - 2 * gram).clamp_min(1e-12));
  torch::Tensor same = labels.unsqueeze(0) == labels.unsqueeze(1);
  torch::Tensor eye = torch::eye(labels.size(0), same.options());
  torch::Tensor positive = same & ~eye, negative = ~same;
  torch::Tensor valid = positive.any(1) & negative.any(1);
  if (!valid.any().item<bool>()) return embeddings.sum() * 0;
  const double inf = std::numeric_limits<double>::infinity();
  torch::Tensor hardest_positive = dist.masked_fill(~positive, -inf).amax(1);
  torch::Tensor hardest_negative = dist.masked_fill(~negative, inf).amin(1);
  torch::Tensor losses = (hardest_positive - hardest_negative + margin).clamp_min(0);
  return losses.masked_select(valid).mean();
}

torch::Tensor centre_loss(const torch::Tensor& embeddings, const torch::Tensor& labels,
                          const torch::Tensor& centres) {
  return (embeddings - centres.index_select(0, labels)).pow(2).sum(1).mean();
}

void update_centres(torch::Tensor& centres, const torch::Tensor& embeddings,
                    const torch::Tensor& labels, double beta) {
  torch::NoGradGuard no_grad;
  torch::Tensor f = embeddings.detach().to(centres.dtype());
  torch::Tensor sums = torch::zeros_like(centres).index_add_(0, labels, f);
  torch::Tensor counts = torch::zeros({centres.size(0)}, centres.options())
                             .index_add_(0, labels, torch::ones_like(labels, centres.options()));
  torch::Tensor present = counts > 0;
  torch::Tensor means = sums / counts.clamp_min(1).unsqueeze(1);
  centres.add_(beta * (means - centres) * present.unsqueeze(1).to(centres.dtype()));
}

std::vector<LossTerm> parse_losses(const Config& config) {
  const YAML::Node list = config.node("train.losses");
  std::vector<LossTerm> terms;
  if (!list || list.IsNull() || (list.IsSequence() && list.size() == 0))
    return {LossTerm{"cross_entropy"}};
  if (!list.IsSequence())
    throw Error("train.losses must be a list of {type: cross_entropy | triplet | centre, weight}");
  for (size_t i = 0; i < list.size(); ++i) {
    const YAML::Node& item = list[i];
    const std::string where = "train.losses[" + std::to_string(i) + "]";
    if (!item.IsMap() || !item["type"])
      throw Error(where + " must be a map with a type (cross_entropy, triplet, centre)");
    LossTerm term;
    try {
      term.type = item["type"].as<std::string>();
      for (const auto& kv : item) {
        const std::string key = kv.first.as<std::string>();
        if (key == "type") continue;
        if (key == "weight")
          term.weight = kv.second.as<double>();
        else if (key == "margin" && term.type == "triplet")
          term.margin = kv.second.as<double>();
        else if (key == "beta" && term.type == "centre")
          term.beta = kv.second.as<double>();
        else
          throw Error(where + ": unknown option '" + key + "' for " + term.type);
      }
    } catch (const YAML::Exception&) {
      throw Error(where + ": options must be numbers");
    }
    if (term.type != "cross_entropy" && term.type != "triplet" && term.type != "centre")
      throw Error(where + ": unknown loss '" + term.type + "' (cross_entropy, triplet, centre)");
    if (term.weight < 0) throw Error(where + ": weight must be >= 0");
    terms.push_back(term);
  }
  return terms;
}

ObjectiveImpl::ObjectiveImpl(const Config& config, int64_t num_classes, int64_t embedding_dim)
    : terms_(parse_losses(config)),
      label_smoothing_(config.get<double>("train.label_smoothing")),
      aux_weight_(config.get<double>("train.aux_loss_weight")) {
  for (const auto& t : terms_) {
    if (t.type == "centre" && !centres_.defined())
      centres_ = register_buffer("centres", torch::zeros({num_classes, embedding_dim}));
  }
}

bool ObjectiveImpl::wants_class_balanced_batches() const {
  for (const auto& t : terms_)
    if (t.type == "triplet") return true;
  return false;
}

torch::Tensor ObjectiveImpl::forward(const models::ModelOutput& output, const torch::Tensor& labels,
                                     const std::vector<torch::Tensor>& view_logits) {
  const auto ce = F::CrossEntropyFuncOptions().label_smoothing(label_smoothing_);
  torch::Tensor total;
  last_.clear();
  auto add = [&](const std::string& name, double weight, const torch::Tensor& value) {
    torch::Tensor weighted = weight * value;
    total = total.defined() ? total + weighted : weighted;
    last_.emplace_back(name, weighted.item<double>());
  };
  for (const auto& t : terms_) {
    if (t.type == "cross_entropy") {
      torch::Tensor loss = F::cross_entropy(output.logits, labels, ce);
      for (const auto& logits : view_logits) loss = loss + F::cross_entropy(logits, labels, ce);
      loss = loss / static_cast<double>(1 + view_logits.size());
      if (output.aux_logits.defined() && aux_weight_ > 0)
        loss = loss + aux_weight_ * F::cross_entropy(output.aux_logits, labels, ce);
      add("ce", t.weight, loss);
    } else if (t.type == "triplet") {
      add("triplet", t.weight, batch_hard_triplet_loss(output.embedding, labels, t.margin));
    } else {
      add("centre", t.weight, centre_loss(output.embedding, labels, centres_));
      if (is_training()) update_centres(centres_, output.embedding, labels, t.beta);
    }
  }
  return total;
}

}  // namespace finch::train
