#include "finch/eval/open_set.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "finch/core/error.h"

namespace finch::eval {

namespace {

struct Scored {
  double score;
  bool known, correct;
};

// Every image, highest score first.
std::vector<Scored> ranked(const OpenSetScores& scores) {
  if (scores.known_correct.size() != scores.known.size())
    throw Error("open-set scores: one correctness flag per known image expected");
  std::vector<Scored> all;
  all.reserve(scores.known.size() + scores.unknown.size());
  for (size_t i = 0; i < scores.known.size(); ++i)
    all.push_back({scores.known[i], true, scores.known_correct[i]});
  for (double s : scores.unknown) all.push_back({s, false, false});
  std::stable_sort(all.begin(), all.end(),
                   [](const Scored& a, const Scored& b) { return a.score > b.score; });
  return all;
}

void require_both(size_t known, size_t unknown) {
  if (known == 0) throw Error("open-set evaluation needs images of known classes; there are none");
  if (unknown == 0)
    throw Error("open-set evaluation needs images of unknown classes; there are none");
}

}  // namespace

std::string to_string(OpenSetScore score) {
  switch (score) {
    case OpenSetScore::kMsp:
      return "msp";
    case OpenSetScore::kMaxLogit:
      return "maxlogit";
    case OpenSetScore::kEnergy:
      return "energy";
    case OpenSetScore::kKnn:
      return "knn";
  }
  return "?";
}

OpenSetScore parse_open_set_score(const std::string& name) {
  for (auto s :
       {OpenSetScore::kMsp, OpenSetScore::kMaxLogit, OpenSetScore::kEnergy, OpenSetScore::kKnn})
    if (to_string(s) == name) return s;
  throw Error("unknown open-set score '" + name + "' (scores: msp, maxlogit, energy, knn)");
}

const std::vector<OpenSetScore>& logit_scores() {
  static const std::vector<OpenSetScore> scores{OpenSetScore::kMsp, OpenSetScore::kMaxLogit,
                                                OpenSetScore::kEnergy};
  return scores;
}

torch::Tensor logit_score(const torch::Tensor& logits, OpenSetScore score) {
  TORCH_CHECK(logits.dim() == 2 && logits.size(1) > 0, "logit_score: logits [N, C] expected, got ",
              logits.sizes());
  c10::InferenceMode guard;
  const torch::Tensor x = logits.to(torch::kDouble);
  switch (score) {
    case OpenSetScore::kMsp:
      return std::get<0>(torch::softmax(x, 1).max(1));
    case OpenSetScore::kMaxLogit:
      return std::get<0>(x.max(1));
    case OpenSetScore::kEnergy:
      return torch::logsumexp(x, {1});
    case OpenSetScore::kKnn:
      break;
  }
  throw Error("the knn score needs reference embeddings, not logits");
}

double auroc(const std::vector<double>& known, const std::vector<double>& unknown) {
  require_both(known.size(), unknown.size());
  // Mann-Whitney: the rank sum of the knowns among all scores, ties at their mean rank.
  std::vector<std::pair<double, bool>> all;
  for (double s : known) all.emplace_back(s, true);
  for (double s : unknown) all.emplace_back(s, false);
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  double known_rank_sum = 0;
  for (size_t i = 0; i < all.size();) {
    size_t j = i;
    while (j < all.size() && all[j].first == all[i].first) ++j;
    const double mean_rank = 0.5 * static_cast<double>(i + 1 + j);  // ranks i+1 .. j
    for (size_t t = i; t < j; ++t)
      if (all[t].second) known_rank_sum += mean_rank;
    i = j;
  }
  const double nk = static_cast<double>(known.size()), nu = static_cast<double>(unknown.size());
  return (known_rank_sum - nk * (nk + 1) / 2) / (nk * nu);
}

double threshold_for_tpr(const std::vector<double>& known, double tpr) {
  if (known.empty()) throw Error("a threshold for a true-positive rate needs known images");
  if (!(tpr > 0 && tpr <= 1)) throw Error(fmt::format("the TPR must be in (0, 1], got {}", tpr));
  std::vector<double> sorted = known;
  std::sort(sorted.begin(), sorted.end(), std::greater<>());
  const auto keep = static_cast<size_t>(
      std::max(1.0, std::ceil(tpr * static_cast<double>(sorted.size()) - 1e-9)));
  return sorted[std::min(keep, sorted.size()) - 1];
}

double fpr_at_tpr(const std::vector<double>& known, const std::vector<double>& unknown,
                  double tpr) {
  require_both(known.size(), unknown.size());
  const double threshold = threshold_for_tpr(known, tpr);
  const auto accepted =
      std::count_if(unknown.begin(), unknown.end(), [&](double s) { return s >= threshold; });
  return static_cast<double>(accepted) / static_cast<double>(unknown.size());
}

double oscr(const OpenSetScores& scores) {
  require_both(scores.known.size(), scores.unknown.size());
  const auto all = ranked(scores);
  const double nk = static_cast<double>(scores.known.size());
  const double nu = static_cast<double>(scores.unknown.size());
  double area = 0, ccr = 0, fpr = 0;
  int64_t correct = 0, false_positives = 0;
  for (size_t i = 0; i < all.size();) {
    // Lowering the threshold to this score admits every image tied at it at once.
    size_t j = i;
    for (; j < all.size() && all[j].score == all[i].score; ++j) {
      correct += all[j].known && all[j].correct;
      false_positives += !all[j].known;
    }
    const double next_ccr = static_cast<double>(correct) / nk;
    const double next_fpr = static_cast<double>(false_positives) / nu;
    area += (next_fpr - fpr) * (next_ccr + ccr) / 2;
    ccr = next_ccr, fpr = next_fpr;
    i = j;
  }
  return area;
}

std::vector<RejectionPoint> rejection_curve(const OpenSetScores& scores, int steps) {
  if (steps < 1) throw Error("rejection curve: steps must be >= 1");
  auto all = ranked(scores);
  std::reverse(all.begin(), all.end());  // lowest score first: rejected first
  const size_t n = all.size();
  if (n == 0) return {};
  std::vector<int64_t> correct_from(n + 1, 0);  // correct knowns among positions >= i
  for (size_t i = n; i-- > 0;)
    correct_from[i] = correct_from[i + 1] + (all[i].known && all[i].correct);
  std::vector<RejectionPoint> curve;
  for (int s = 0; s < steps; ++s) {
    const auto rejected = static_cast<size_t>(static_cast<double>(s) / steps * n);
    RejectionPoint p;
    p.rejected = static_cast<double>(rejected) / static_cast<double>(n);
    p.accuracy = static_cast<double>(correct_from[rejected]) / static_cast<double>(n - rejected);
    p.threshold = all[rejected].score;
    curve.push_back(p);
  }
  return curve;
}

OpenSetMetrics open_set_metrics(const OpenSetScores& scores, double tpr) {
  require_both(scores.known.size(), scores.unknown.size());
  OpenSetMetrics m;
  m.known = static_cast<int64_t>(scores.known.size());
  m.unknown = static_cast<int64_t>(scores.unknown.size());
  m.auroc = auroc(scores.known, scores.unknown);
  m.tpr = tpr;
  m.threshold_at_tpr = threshold_for_tpr(scores.known, tpr);
  m.fpr_at_tpr = fpr_at_tpr(scores.known, scores.unknown, tpr);
  m.oscr = oscr(scores);
  m.closed_accuracy = static_cast<double>(std::count(scores.known_correct.begin(),
                                                     scores.known_correct.end(), true)) /
                      static_cast<double>(m.known);
  return m;
}

nlohmann::json to_json(const OpenSetMetrics& m) {
  return {{"auroc", m.auroc},
          {"tpr", m.tpr},
          {"fpr_at_tpr", m.fpr_at_tpr},
          {"threshold_at_tpr", m.threshold_at_tpr},
          {"oscr", m.oscr},
          {"closed_accuracy", m.closed_accuracy},
          {"known", m.known},
          {"unknown", m.unknown}};
}

}  // namespace finch::eval
