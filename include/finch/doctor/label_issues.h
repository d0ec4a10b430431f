#pragma once
// Label issues by confident learning (Northcutt, Jiang & Chuang 2021, JAIR): from
// out-of-sample predicted probabilities and the given labels, estimate the joint
// distribution of given and true labels and name the images whose given label is most
// likely wrong. The exact rules (thresholds, ties, rounding) are written out in
// docs/data-doctor.md and in tests/parity/confident_learning_reference.py, a separate
// Python implementation the tests compare against.
#include <cstdint>
#include <string>
#include <vector>

namespace finch::doctor {

enum class LabelIssueMethod {
  kConfidentJoint,    // C_confusion: every off-diagonal entry of the confident joint
  kPruneByNoiseRate,  // Cl:PBNR: per class pair, the n * Q[i][j] largest margins
};
LabelIssueMethod parse_label_issue_method(const std::string& name);
std::string to_string(LabelIssueMethod method);

struct LabelIssue {
  size_t index = 0;  // row of the probabilities
  int64_t given = 0, suggested = 0;
  double self_confidence = 0;  // P[x, given]
  double margin = 0;           // P[x, suggested] - P[x, given]
};

struct ConfidentLearning {
  std::vector<double> thresholds;                     // t_j: mean P[x, j] over x labelled j
  std::vector<std::vector<int64_t>> confident_joint;  // C[given][confident label]
  std::vector<std::vector<double>> joint;             // Q, calibrated, sums to 1
  /// noise[i][j]: the share of images labelled i whose true class is j (Q's rows normalised).
  std::vector<std::vector<double>> noise;
  /// Ranked by self-confidence ascending (ties: index).
  std::vector<LabelIssue> issues;
};

/// `probabilities` is [n][m] (rows sum to about 1), `labels` n given labels in [0, m). Throws
/// finch::Error when a class has no image (its threshold is undefined) or shapes disagree.
ConfidentLearning confident_learning(const std::vector<std::vector<double>>& probabilities,
                                     const std::vector<int64_t>& labels, LabelIssueMethod method);

}  // namespace finch::doctor
