#include "finch/doctor/label_issues.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "finch/core/error.h"

namespace finch::doctor {

LabelIssueMethod parse_label_issue_method(const std::string& name) {
  if (name == "confident_joint") return LabelIssueMethod::kConfidentJoint;
  if (name == "prune_by_noise_rate") return LabelIssueMethod::kPruneByNoiseRate;
  throw Error("unknown label-issue method '" + name +
              "' (methods: prune_by_noise_rate, confident_joint)");
}

std::string to_string(LabelIssueMethod method) {
  return method == LabelIssueMethod::kConfidentJoint ? "confident_joint" : "prune_by_noise_rate";
}

ConfidentLearning confident_learning(const std::vector<std::vector<double>>& p,
                                     const std::vector<int64_t>& labels, LabelIssueMethod method) {
  const size_t n = p.size();
  if (labels.size() != n)
    throw Error(
        fmt::format("confident learning: {} probability rows for {} labels", n, labels.size()));
  if (n == 0) throw Error("confident learning needs at least one image");
  const size_t m = p[0].size();
  std::vector<int64_t> count(m, 0);
  ConfidentLearning out;
  out.thresholds.assign(m, 0.0);
  for (size_t x = 0; x < n; ++x) {
    if (p[x].size() != m)
      throw Error(fmt::format("confident learning: row {} has {} probabilities, row 0 has {}", x,
                              p[x].size(), m));
    if (labels[x] < 0 || static_cast<size_t>(labels[x]) >= m)
      throw Error(fmt::format("confident learning: label {} of image {} is not a class (0..{})",
                              labels[x], x, m - 1));
    ++count[labels[x]];
    out.thresholds[labels[x]] += p[x][labels[x]];
  }
  for (size_t j = 0; j < m; ++j) {
    if (count[j] == 0)
      throw Error(fmt::format(
          "confident learning: class {} has no image, so its threshold is undefined (leave "
          "the class out, or give it images)",
          j));
    out.thresholds[j] /= static_cast<double>(count[j]);
  }

  // Confident joint: each image counts once, at (given, the most probable class among those
  // whose probability reaches their threshold).
  out.confident_joint.assign(m, std::vector<int64_t>(m, 0));
  std::vector<int64_t> confident(n, -1);
  for (size_t x = 0; x < n; ++x) {
    int64_t best = -1;
    for (size_t j = 0; j < m; ++j)
      if (p[x][j] >= out.thresholds[j] && (best < 0 || p[x][j] > p[x][best]))
        best = static_cast<int64_t>(j);
    confident[x] = best;
    if (best >= 0) ++out.confident_joint[labels[x]][best];
  }

  // Calibrate: rows scaled to the given-label counts, then normalised to a joint.
  out.joint.assign(m, std::vector<double>(m, 0.0));
  double total = 0;
  for (size_t i = 0; i < m; ++i) {
    int64_t row = 0;
    for (int64_t c : out.confident_joint[i]) row += c;
    if (row == 0) continue;
    for (size_t j = 0; j < m; ++j) {
      out.joint[i][j] = double(out.confident_joint[i][j]) / double(row) * double(count[i]);
      total += out.joint[i][j];
    }
  }
  out.noise.assign(m, std::vector<double>(m, 0.0));
  for (size_t i = 0; i < m; ++i) {
    double row = 0;
    for (size_t j = 0; j < m; ++j) {
      if (total > 0) out.joint[i][j] /= total;
      row += out.joint[i][j];
    }
    for (size_t j = 0; j < m; ++j) out.noise[i][j] = row > 0 ? out.joint[i][j] / row : 0.0;
  }

  auto issue = [&](size_t x, int64_t suggested) {
    const int64_t given = labels[x];
    return LabelIssue{x, given, suggested, p[x][given], p[x][suggested] - p[x][given]};
  };
  if (method == LabelIssueMethod::kConfidentJoint) {
    for (size_t x = 0; x < n; ++x)
      if (confident[x] >= 0 && confident[x] != labels[x])
        out.issues.push_back(issue(x, confident[x]));
  } else {
    // For every off-diagonal (i, j): the floor(n Q[i][j] + 0.5) images labelled i with the
    // largest margin P[x, j] - P[x, i]; an image picked for several j keeps its largest margin.
    std::vector<std::vector<size_t>> by_label(m);
    for (size_t x = 0; x < n; ++x) by_label[labels[x]].push_back(x);
    std::map<size_t, LabelIssue> picked;
    for (size_t i = 0; i < m; ++i)
      for (size_t j = 0; j < m; ++j) {
        if (i == j) continue;
        const auto k = static_cast<size_t>(std::floor(double(n) * out.joint[i][j] + 0.5));
        if (k == 0) continue;
        std::vector<size_t> rows = by_label[i];
        const auto margin = [&](size_t x) { return p[x][j] - p[x][i]; };
        const size_t take = std::min(k, rows.size());
        std::partial_sort(rows.begin(), rows.begin() + take, rows.end(), [&](size_t a, size_t b) {
          if (margin(a) != margin(b)) return margin(a) > margin(b);
          return a < b;
        });
        for (size_t r = 0; r < take; ++r) {
          const LabelIssue candidate = issue(rows[r], static_cast<int64_t>(j));
          auto [it, added] = picked.emplace(rows[r], candidate);
          if (!added && (candidate.margin > it->second.margin ||
                         (candidate.margin == it->second.margin &&
                          candidate.suggested < it->second.suggested)))
            it->second = candidate;
        }
      }
    for (const auto& [x, found] : picked) out.issues.push_back(found);
  }
  std::stable_sort(out.issues.begin(), out.issues.end(),
                   [](const LabelIssue& a, const LabelIssue& b) {
                     if (a.self_confidence != b.self_confidence)
                       return a.self_confidence < b.self_confidence;
                     return a.index < b.index;
                   });
  return out;
}

}  // namespace finch::doctor
