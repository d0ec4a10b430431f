#pragma once
// Open-set recognition, "none of these": a score per image saying how much it looks like one
// of the classes the model knows, and the metrics the open-set literature reports for it
// (Vaze et al. 2022, "Open-set recognition: a good closed-set classifier is all you need?").
// Every score is oriented the same way: higher = more likely a known class.
#include <torch/types.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace finch::eval {

enum class OpenSetScore { kMsp, kMaxLogit, kEnergy, kKnn };

/// "msp", "maxlogit", "energy", "knn".
std::string to_string(OpenSetScore score);
/// Throws finch::Error naming the known scores.
OpenSetScore parse_open_set_score(const std::string& name);
/// The scores computed from logits alone (everything but kKnn), in report order.
const std::vector<OpenSetScore>& logit_scores();

/// One score per row of logits [N, C]:
///   msp       maximum softmax probability (Hendrycks & Gimpel 2017)
///   maxlogit  maximum logit (Vaze et al. 2022)
///   energy    logsumexp of the logits, the negative free energy at T = 1 (Liu et al. 2020)
/// kKnn is not a logit score (see gallery::kth_similarity); asking for it throws.
torch::Tensor logit_score(const torch::Tensor& logits, OpenSetScore score);

/// The scores of one evaluation: known-class images (with whether the closed-set top-1 was
/// right) and images of classes the model never saw.
struct OpenSetScores {
  std::vector<double> known, unknown;
  std::vector<bool> known_correct;  // one per known score
};

struct OpenSetMetrics {
  double auroc = 0;       // P(score of a known > score of an unknown), ties count half
  double tpr = 0.95;      // the operating point of fpr_at_tpr
  double fpr_at_tpr = 0;  // share of unknowns accepted at the threshold keeping `tpr` of knowns
  double threshold_at_tpr = 0;
  double oscr = 0;             // area under correct-classification rate vs false-positive rate
  double closed_accuracy = 0;  // top-1 on the known images, nothing rejected
  int64_t known = 0, unknown = 0;
};

/// Throws finch::Error when either side is empty.
OpenSetMetrics open_set_metrics(const OpenSetScores& scores, double tpr = 0.95);

/// Area under the ROC curve with knowns as positives (the Mann-Whitney statistic).
double auroc(const std::vector<double>& known, const std::vector<double>& unknown);
/// The largest threshold t with share(known >= t) >= tpr: accepting scores >= t keeps at
/// least `tpr` of the known images. tpr in (0, 1].
double threshold_for_tpr(const std::vector<double>& known, double tpr);
/// Share of unknowns with score >= threshold_for_tpr(known, tpr).
double fpr_at_tpr(const std::vector<double>& known, const std::vector<double>& unknown, double tpr);
/// Open-Set Classification Rate (Dhamija et al. 2018): over thresholds t, CCR(t) = share of
/// known images classified correctly with score >= t, FPR(t) = share of unknowns with
/// score >= t; the trapezoidal area under CCR against FPR from (0, 0) to (1, accuracy).
double oscr(const OpenSetScores& scores);

/// Accuracy once the lowest-scored images are rejected: for rejected shares 0, 1/steps, ...,
/// (steps-1)/steps of all test images, accuracy = correct accepted knowns / accepted images
/// (an accepted unknown is a mistake).
struct RejectionPoint {
  double rejected = 0, accuracy = 0, threshold = 0;
};
std::vector<RejectionPoint> rejection_curve(const OpenSetScores& scores, int steps = 50);

nlohmann::json to_json(const OpenSetMetrics& metrics);

}  // namespace finch::eval
