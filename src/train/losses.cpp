#include "finch/train/losses.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>

#include "finch/core/error.h"
#include "finch/core/registry.h"

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

torch::Tensor contrastive_loss(const torch::Tensor& embeddings, const torch::Tensor& labels,
                               double margin) {
  torch::Tensor z = F::normalize(embeddings, F::NormalizeFuncOptions().dim(1).eps(1e-12));
  torch::Tensor cosine = torch::matmul(z, z.t());
  torch::Tensor same = (labels.unsqueeze(0) == labels.unsqueeze(1)).to(cosine.dtype());
  torch::Tensor pairs = (1 - cosine) * same + (cosine - margin).clamp_min(0) * (1 - same);
  const auto b = static_cast<double>(embeddings.size(0));
  return pairs.sum() / (b * b);
}

namespace {

// What one training or validation step gives every loss.
struct StepInputs {
  const models::ModelOutput& output;
  const torch::Tensor& labels;
  const std::vector<torch::Tensor>& view_logits;
  const F::CrossEntropyFuncOptions& ce;
  const std::function<torch::Tensor(const torch::Tensor&)>& adjusted;  // logit adjustment
  double aux_weight;
  bool training;
  torch::Tensor& centres;
  double cosine_scale;
};

// A loss kind of the registry: its options (list-entry keys -> LossTerm fields) with the
// published defaults, what it needs, and its value for one step.
struct LossKind {
  std::string log_name;  // in the training log ("ce", "triplet", ...)
  std::map<std::string, double LossTerm::*> options;
  std::function<void(LossTerm&)> defaults = [](LossTerm&) {};
  bool class_balanced_batches = false;  // wants data.sampler: pk
  bool needs_centres = false;
  bool needs_cosine_head = false;
  std::function<torch::Tensor(const LossTerm&, const StepInputs&)> compute;
};

torch::Tensor cross_entropy_term(const LossTerm&, const StepInputs& in) {
  torch::Tensor loss = F::cross_entropy(in.adjusted(in.output.logits), in.labels, in.ce);
  for (const auto& logits : in.view_logits)
    loss = loss + F::cross_entropy(in.adjusted(logits), in.labels, in.ce);
  loss = loss / static_cast<double>(1 + in.view_logits.size());
  if (in.output.aux_logits.defined() && in.aux_weight > 0)
    loss = loss +
           in.aux_weight * F::cross_entropy(in.adjusted(in.output.aux_logits), in.labels, in.ce);
  return loss;
}

LossKind margin_softmax_kind(const std::string& name, MarginKind kind, double margin) {
  return {name,
          {{"margin", &LossTerm::margin}},
          [margin](LossTerm& t) { t.margin = margin; },
          false,
          false,
          true,
          [kind](const LossTerm& t, const StepInputs& in) {
            // Margins only shape training; validation reports the plain cosine cross-entropy.
            return in.training ? margin_softmax_loss(in.output.logits, in.labels, in.cosine_scale,
                                                     t.margin, kind)
                               : F::cross_entropy(in.output.logits, in.labels);
          }};
}

Registry<LossKind>& loss_kinds() {
  static Registry<LossKind> registry("losses", "loss", "train.losses[].type");
  static const bool filled = [] {
    auto& r = registry;
    r.add({"cross_entropy",
           "softmax cross-entropy (train.label_smoothing, class_weights, logit_adjustment), "
           "averaged over the head's extra views, plus the auxiliary classifier's",
           {"ce", {}, [](LossTerm&) {}, false, false, false, cross_entropy_term}});
    r.add({"triplet",
           "batch-hard triplet loss (Hermans et al. 2017) on the embedding: margin 0.3",
           {"triplet",
            {{"margin", &LossTerm::margin}},
            [](LossTerm&) {},
            true,
            false,
            false,
            [](const LossTerm& t, const StepInputs& in) {
              return batch_hard_triplet_loss(in.output.embedding, in.labels, t.margin);
            }}});
    r.add({"multi_similarity",
           "multi-similarity loss (Wang et al. 2019), pytorch-metric-learning's definition: "
           "alpha 2, beta 50, base 0.5, epsilon 0.1",
           {"ms",
            {{"alpha", &LossTerm::alpha},
             {"beta", &LossTerm::beta},
             {"base", &LossTerm::base},
             {"epsilon", &LossTerm::epsilon}},
            [](LossTerm& t) { t.beta = 50; },
            true,
            false,
            false,
            [](const LossTerm& t, const StepInputs& in) {
              return multi_similarity_loss(in.output.embedding, in.labels, t.alpha, t.beta, t.base,
                                           t.epsilon);
            }}});
    r.add({"centre",
           "centre loss (Wen et al. 2016): squared distance to the class centre, centres moved "
           "by beta 0.05 each step",
           {"centre",
            {{"beta", &LossTerm::beta}},
            [](LossTerm&) {},
            false,
            true,
            false,
            [](const LossTerm& t, const StepInputs& in) {
              torch::Tensor loss = centre_loss(in.output.embedding, in.labels, in.centres);
              if (in.training) update_centres(in.centres, in.output.embedding, in.labels, t.beta);
              return loss;
            }}});
    r.add({"contrastive",
           "TransFG's contrastive loss (He et al. 2022) on the embedding's cosine similarities: "
           "1 - cos for same-class pairs, max(cos - margin, 0) for others, margin 0.4, / B^2",
           {"contrastive",
            {{"margin", &LossTerm::margin}},
            [](LossTerm& t) { t.margin = 0.4; },
            false,
            false,
            false,
            [](const LossTerm& t, const StepInputs& in) {
              return contrastive_loss(in.output.embedding, in.labels, t.margin);
            }}});
    r.add({"cosface",
           "CosFace (Wang et al. 2018) additive cosine margin 0.35; needs the cosine head",
           margin_softmax_kind("cosface", MarginKind::kCosFace, 0.35)});
    r.add({"arcface",
           "ArcFace (Deng et al. 2019) additive angular margin 0.5; needs the cosine head",
           margin_softmax_kind("arcface", MarginKind::kArcFace, 0.5)});
    return true;
  }();
  (void)filled;
  return registry;
}
// Built at load time, so `finch list`, `--help` and the config schema see every entry.
[[maybe_unused]] const bool kLossesRegistered = (loss_kinds(), true);

}  // namespace

std::vector<LossTerm> parse_losses(const Config& config) {
  const YAML::Node list = config.node("train.losses");
  std::vector<LossTerm> terms;
  if (!list || list.IsNull() || (list.IsSequence() && list.size() == 0))
    return {LossTerm{"cross_entropy"}};
  const std::string known = "one of: " + [] {
    std::string names;
    for (const auto& n : loss_kinds().names()) names += (names.empty() ? "" : ", ") + n;
    return names;
  }();
  if (!list.IsSequence())
    throw Error("train.losses must be a list of {type: NAME, weight, ...} (" + known + ")");
  for (size_t i = 0; i < list.size(); ++i) {
    const YAML::Node& item = list[i];
    const std::string where = "train.losses[" + std::to_string(i) + "]";
    if (!item.IsMap() || !item["type"])
      throw Error(where + " must be a map with a type (" + known + ")");
    LossTerm term;
    try {
      term.type = item["type"].as<std::string>();
      if (!loss_kinds().contains(term.type))
        throw Error(where + ": unknown loss '" + term.type + "' (" + known + ")");
      const LossKind& kind = loss_kinds().factory(term.type);
      kind.defaults(term);  // each loss's published defaults
      for (const auto& kv : item) {
        const std::string key = kv.first.as<std::string>();
        if (key == "type") continue;
        if (key == "weight") {
          term.weight = kv.second.as<double>();
          continue;
        }
        auto option = kind.options.find(key);
        if (option == kind.options.end())
          throw Error(where + ": unknown option '" + key + "' for " + term.type);
        term.*(option->second) = kv.second.as<double>();
      }
    } catch (const YAML::Exception&) {
      throw Error(where + ": options must be numbers");
    }
    if (term.type == "arcface" && !(term.margin >= 0 && term.margin < M_PI / 2))
      throw Error(where + ": the arcface margin must be in [0, pi/2)");
    if (term.weight < 0) throw Error(where + ": weight must be >= 0");
    terms.push_back(term);
  }
  return terms;
}

std::vector<std::string> loss_names() { return loss_kinds().names(); }

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
    const LossKind& kind = loss_kinds().factory(t.type);
    if (kind.needs_centres && !centres_.defined())
      centres_ = register_buffer("centres", torch::zeros({num_classes, embedding_dim}));
    if (kind.needs_cosine_head) {
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
    if (loss_kinds().factory(t.type).class_balanced_batches) return true;
  return false;
}

torch::Tensor ObjectiveImpl::forward(const models::ModelOutput& output, const torch::Tensor& labels,
                                     const std::vector<torch::Tensor>& view_logits) {
  auto ce = F::CrossEntropyFuncOptions().label_smoothing(label_smoothing_);
  if (class_weights_.defined()) ce.weight(class_weights_.to(output.logits.device()));
  // Logit adjustment shapes training only: validation sees the logits predictions use.
  const std::function<torch::Tensor(const torch::Tensor&)> adjusted =
      [&](const torch::Tensor& logits) {
        return logit_shift_.defined() && is_training() ? logits + logit_shift_.to(logits.device())
                                                       : logits;
      };
  const StepInputs inputs{output,      labels,        view_logits, ce,           adjusted,
                          aux_weight_, is_training(), centres_,    cosine_scale_};
  torch::Tensor total;
  last_.clear();
  for (const auto& t : terms_) {
    const LossKind& kind = loss_kinds().factory(t.type);
    torch::Tensor weighted = t.weight * kind.compute(t, inputs);
    total = total.defined() ? total + weighted : weighted;
    last_.emplace_back(kind.log_name, weighted.item<double>());
  }
  return total;
}

}  // namespace finch::train
