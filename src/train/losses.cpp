#include "finch/train/losses.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

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

torch::Tensor multi_similarity_loss(const torch::Tensor& embeddings, const torch::Tensor& labels,
                                    double alpha, double beta, double base, double epsilon) {
  torch::Tensor x = F::normalize(embeddings, F::NormalizeFuncOptions().dim(1).eps(1e-12));
  torch::Tensor sim = torch::matmul(x, x.t());
  torch::Tensor same = labels.unsqueeze(0) == labels.unsqueeze(1);
  torch::Tensor eye = torch::eye(labels.size(0), same.options());
  torch::Tensor positive = same & ~eye, negative = ~same;
  if (epsilon > 0) {
    // Mining on detached similarities (the miner chooses pairs; gradients flow through S).
    torch::NoGradGuard no_grad;
    torch::Tensor s = sim.detach();
    const double inf = std::numeric_limits<double>::infinity();
    torch::Tensor hardest_negative = s.masked_fill(~negative, -inf).amax(1, true);
    torch::Tensor hardest_positive = s.masked_fill(~positive, inf).amin(1, true);
    torch::Tensor has_both = positive.any(1, true) & negative.any(1, true);
    positive = positive & (s - epsilon < hardest_negative) & has_both;
    negative = negative & (s + epsilon > hardest_positive) & has_both;
  }
  // log(1 + sum exp(z)) over the kept pairs = logsumexp of [z (masked), 0].
  auto log1p_sum_exp = [](const torch::Tensor& z, const torch::Tensor& keep) {
    torch::Tensor masked = z.masked_fill(~keep, -std::numeric_limits<double>::infinity());
    torch::Tensor zero = torch::zeros({z.size(0), 1}, z.options());
    return torch::logsumexp(torch::cat({masked, zero}, 1), 1);
  };
  torch::Tensor pos = log1p_sum_exp(-alpha * (sim - base), positive) / alpha;
  torch::Tensor neg = log1p_sum_exp(beta * (sim - base), negative) / beta;
  return (pos + neg).mean();
}

torch::Tensor margin_softmax_loss(const torch::Tensor& cosine_logits, const torch::Tensor& labels,
                                  double scale, double margin, MarginKind kind) {
  TORCH_CHECK(scale > 0, "margin_softmax_loss: scale must be > 0");
  torch::Tensor cosine = cosine_logits / scale;
  torch::Tensor target = cosine.gather(1, labels.unsqueeze(1));
  torch::Tensor adjusted;
  if (kind == MarginKind::kCosFace) {
    adjusted = target - margin;
  } else {
    // acos's gradient is infinite at +-1: clamp the cosine just inside, as the references do.
    const double eps = 1e-7;
    torch::Tensor theta = torch::acos(target.clamp(-1 + eps, 1 - eps));
    adjusted = torch::cos(torch::clamp(theta + margin, 0.0, M_PI));
  }
  torch::Tensor logits = cosine.scatter(1, labels.unsqueeze(1), adjusted) * scale;
  return F::cross_entropy(logits, labels);
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
      // Each loss's published defaults.
      if (term.type == "multi_similarity") term.beta = 50;
      if (term.type == "cosface") term.margin = 0.35;
      if (term.type == "arcface") term.margin = 0.5;
      for (const auto& kv : item) {
        const std::string key = kv.first.as<std::string>();
        if (key == "type") continue;
        if (key == "weight")
          term.weight = kv.second.as<double>();
        else if (key == "margin" && term.type == "triplet")
          term.margin = kv.second.as<double>();
        else if (key == "margin" && (term.type == "cosface" || term.type == "arcface"))
          term.margin = kv.second.as<double>();
        else if (key == "beta" && (term.type == "centre" || term.type == "multi_similarity"))
          term.beta = kv.second.as<double>();
        else if (key == "alpha" && term.type == "multi_similarity")
          term.alpha = kv.second.as<double>();
        else if (key == "base" && term.type == "multi_similarity")
          term.base = kv.second.as<double>();
        else if (key == "epsilon" && term.type == "multi_similarity")
          term.epsilon = kv.second.as<double>();
        else
          throw Error(where + ": unknown option '" + key + "' for " + term.type);
      }
    } catch (const YAML::Exception&) {
      throw Error(where + ": options must be numbers");
    }
    static const std::vector<std::string> kKnown{"cross_entropy",    "triplet", "centre",
                                                 "multi_similarity", "cosface", "arcface"};
    if (std::find(kKnown.begin(), kKnown.end(), term.type) == kKnown.end())
      throw Error(where + ": unknown loss '" + term.type +
                  "' (cross_entropy, triplet, centre, multi_similarity, cosface, arcface)");
    if (term.type == "arcface" && !(term.margin >= 0 && term.margin < M_PI / 2))
      throw Error(where + ": the arcface margin must be in [0, pi/2)");
    if (term.weight < 0) throw Error(where + ": weight must be >= 0");
    terms.push_back(term);
  }
  return terms;
}

torch::Tensor effective_number_weights(const std::vector<int64_t>& class_counts, double beta) {
  if (!(beta > 0 && beta < 1))
    throw Error("train.class_weight_beta must be in (0, 1), got " + std::to_string(beta));
  std::vector<double> w(class_counts.size(), 0.0);
  double sum = 0;
  size_t present = 0;
  for (size_t c = 0; c < w.size(); ++c) {
    if (class_counts[c] <= 0) continue;
    w[c] = (1 - beta) / (1 - std::pow(beta, static_cast<double>(class_counts[c])));
    sum += w[c];
    ++present;
  }
  for (double& v : w) v = sum > 0 ? v * static_cast<double>(present) / sum : 0.0;
  return torch::tensor(w, torch::kFloat);
}

ObjectiveImpl::ObjectiveImpl(const Config& config, int64_t num_classes, int64_t embedding_dim,
                             const std::vector<int64_t>& class_counts)
    : terms_(parse_losses(config)),
      label_smoothing_(config.get<double>("train.label_smoothing")),
      aux_weight_(config.get<double>("train.aux_loss_weight")) {
  const std::string weights = config.get<std::string>("train.class_weights");
  const double tau = config.get<double>("train.logit_adjustment");
  if (weights != "none" && weights != "effective_number")
    throw Error("train.class_weights must be none or effective_number, got '" + weights + "'");
  if (!(tau >= 0)) throw Error("train.logit_adjustment must be >= 0 (0: off)");
  if ((weights != "none" || tau > 0) && static_cast<int64_t>(class_counts.size()) != num_classes)
    throw Error(
        "train.class_weights / train.logit_adjustment need the training data's class "
        "counts");
  if (weights == "effective_number")
    class_weights_ =
        effective_number_weights(class_counts, config.get<double>("train.class_weight_beta"));
  if (tau > 0) {
    // Menon et al. 2021: the prior of a class without images is taken as one image's.
    std::vector<double> log_prior;
    double total = 0;
    for (int64_t n : class_counts) total += static_cast<double>(std::max<int64_t>(n, 1));
    for (int64_t n : class_counts)
      log_prior.push_back(tau * std::log(static_cast<double>(std::max<int64_t>(n, 1)) / total));
    logit_shift_ = torch::tensor(log_prior, torch::kFloat);
  }
  for (const auto& t : terms_) {
    if (t.type == "centre" && !centres_.defined())
      centres_ = register_buffer("centres", torch::zeros({num_classes, embedding_dim}));
    if (t.type == "cosface" || t.type == "arcface") {
      if (config.get<std::string>("model.head") != "cosine")
        throw Error("train.losses: " + t.type +
                    " needs the cosine head (model.head: cosine), whose logits are "
                    "scale x cosine");
      cosine_scale_ = config.get<double>("model.cosine_scale");
    }
  }
}

bool ObjectiveImpl::wants_class_balanced_batches() const {
  for (const auto& t : terms_)
    if (t.type == "triplet" || t.type == "multi_similarity") return true;
  return false;
}

torch::Tensor ObjectiveImpl::forward(const models::ModelOutput& output, const torch::Tensor& labels,
                                     const std::vector<torch::Tensor>& view_logits) {
  auto ce = F::CrossEntropyFuncOptions().label_smoothing(label_smoothing_);
  if (class_weights_.defined()) ce.weight(class_weights_.to(output.logits.device()));
  // Logit adjustment shapes training only: validation sees the logits predictions use.
  const auto adjusted = [&](const torch::Tensor& logits) {
    return logit_shift_.defined() && is_training() ? logits + logit_shift_.to(logits.device())
                                                   : logits;
  };
  torch::Tensor total;
  last_.clear();
  auto add = [&](const std::string& name, double weight, const torch::Tensor& value) {
    torch::Tensor weighted = weight * value;
    total = total.defined() ? total + weighted : weighted;
    last_.emplace_back(name, weighted.item<double>());
  };
  for (const auto& t : terms_) {
    if (t.type == "cross_entropy") {
      torch::Tensor loss = F::cross_entropy(adjusted(output.logits), labels, ce);
      for (const auto& logits : view_logits)
        loss = loss + F::cross_entropy(adjusted(logits), labels, ce);
      loss = loss / static_cast<double>(1 + view_logits.size());
      if (output.aux_logits.defined() && aux_weight_ > 0)
        loss = loss + aux_weight_ * F::cross_entropy(adjusted(output.aux_logits), labels, ce);
      add("ce", t.weight, loss);
    } else if (t.type == "triplet") {
      add("triplet", t.weight, batch_hard_triplet_loss(output.embedding, labels, t.margin));
    } else if (t.type == "multi_similarity") {
      add("ms", t.weight,
          multi_similarity_loss(output.embedding, labels, t.alpha, t.beta, t.base, t.epsilon));
    } else if (t.type == "cosface" || t.type == "arcface") {
      // Margins only shape training; validation reports the plain cosine cross-entropy.
      torch::Tensor loss = is_training()
                               ? margin_softmax_loss(output.logits, labels, cosine_scale_, t.margin,
                                                     t.type == "cosface" ? MarginKind::kCosFace
                                                                         : MarginKind::kArcFace)
                               : F::cross_entropy(output.logits, labels);
      add(t.type, t.weight, loss);
    } else {
      add("centre", t.weight, centre_loss(output.embedding, labels, centres_));
      if (is_training()) update_centres(centres_, output.embedding, labels, t.beta);
    }
  }
  return total;
}

}  // namespace finch::train
