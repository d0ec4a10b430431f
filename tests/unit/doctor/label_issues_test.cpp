// Confident learning against tests/parity/confident_learning_reference.py (a separate Python
// implementation of the same written rules) on the same probabilities: thresholds, the
// confident joint, the calibrated joint and noise matrix, and both issue lists in rank order.
#include "finch/doctor/label_issues.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <random>

#include "finch/core/atomic_file.h"
#include "test_support.h"

namespace fd = finch::doctor;

namespace {

struct Problem {
  std::vector<std::vector<double>> p;
  std::vector<int64_t> labels;
  std::vector<int64_t> truth;
};

// n samples of m classes; 15% of the labels flipped; probabilities a softmax of a noisy score
// that favours the true class. `coarse` rounds them to 0.05 (ties everywhere).
Problem make_problem(size_t n, size_t m, uint32_t seed, bool coarse) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> noise(0.0, 1.0);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  Problem out;
  for (size_t x = 0; x < n; ++x) {
    const auto truth = static_cast<int64_t>(x % m);
    int64_t given = truth;
    if (unit(rng) < 0.15) given = static_cast<int64_t>((truth + 1 + rng() % (m - 1)) % m);
    std::vector<double> row(m);
    double sum = 0;
    for (size_t j = 0; j < m; ++j) {
      row[j] = std::exp((static_cast<int64_t>(j) == truth ? 2.0 : 0.0) + noise(rng));
      sum += row[j];
    }
    for (double& v : row) v = coarse ? std::round(v / sum * 20) / 20 : v / sum;
    out.p.push_back(row);
    out.labels.push_back(given);
    out.truth.push_back(truth);
  }
  return out;
}

void compare_with_reference(const Problem& problem, const std::string& name) {
  finch::test::TempDir dir("finch-cl-" + name);
  std::string csv = "label";
  for (size_t j = 0; j < problem.p[0].size(); ++j) csv += fmt::format(",p{}", j);
  csv += "\n";
  for (size_t x = 0; x < problem.p.size(); ++x) {
    csv += std::to_string(problem.labels[x]);
    for (double v : problem.p[x]) csv += fmt::format(",{:.17g}", v);
    csv += "\n";
  }
  finch::write_file_atomic(dir.path() / "probs.csv", csv);
  finch::test::run_python_reference(
      "confident_learning_reference.py",
      (dir.path() / "probs.csv").string() + " " + (dir.path() / "reference.json").string());
  const auto ref = nlohmann::json::parse(finch::read_file(dir.path() / "reference.json"));
  for (auto method :
       {fd::LabelIssueMethod::kConfidentJoint, fd::LabelIssueMethod::kPruneByNoiseRate}) {
    const auto mine = fd::confident_learning(problem.p, problem.labels, method);
    const size_t m = mine.thresholds.size();
    ASSERT_EQ(ref["thresholds"].size(), m) << name;
    for (size_t j = 0; j < m; ++j) {
      EXPECT_NEAR(mine.thresholds[j], ref["thresholds"][j].get<double>(), 1e-12) << name;
      for (size_t k = 0; k < m; ++k) {
        EXPECT_EQ(mine.confident_joint[j][k], ref["confident_joint"][j][k].get<int64_t>())
            << name << " C[" << j << "][" << k << "]";
        EXPECT_NEAR(mine.joint[j][k], ref["joint"][j][k].get<double>(), 1e-12) << name;
        EXPECT_NEAR(mine.noise[j][k], ref["noise_matrix"][j][k].get<double>(), 1e-12) << name;
      }
    }
    const auto& expected = ref["issues"][fd::to_string(method)];
    ASSERT_EQ(mine.issues.size(), expected.size()) << name << " " << fd::to_string(method);
    for (size_t i = 0; i < mine.issues.size(); ++i) {
      EXPECT_EQ(mine.issues[i].index, expected[i]["index"].get<size_t>())
          << name << " " << fd::to_string(method) << " rank " << i;
      EXPECT_EQ(mine.issues[i].suggested, expected[i]["suggested"].get<int64_t>())
          << name << " " << fd::to_string(method) << " rank " << i;
    }
  }
}

}  // namespace

TEST(ConfidentLearning, MatchesTheReferenceImplementation) {
  compare_with_reference(make_problem(600, 4, 1, false), "smooth");
  compare_with_reference(make_problem(400, 5, 2, true), "ties");
  compare_with_reference(make_problem(90, 2, 3, false), "binary");
}

TEST(ConfidentLearning, FindsFlippedLabelsAndEstimatesTheNoise) {
  const Problem problem = make_problem(3000, 4, 4, false);
  size_t flipped = 0;
  for (size_t x = 0; x < problem.labels.size(); ++x)
    flipped += problem.labels[x] != problem.truth[x];
  const auto cl =
      fd::confident_learning(problem.p, problem.labels, fd::LabelIssueMethod::kPruneByNoiseRate);
  size_t right = 0;
  for (const auto& issue : cl.issues) {
    right += problem.labels[issue.index] != problem.truth[issue.index];
    EXPECT_NE(issue.suggested, issue.given);
  }
  EXPECT_GT(double(right) / cl.issues.size(), 0.6);  // precision (15% if guessing)
  EXPECT_GT(double(right) / flipped, 0.6);           // recall
  // The estimated off-diagonal share of each given label is near the 15% flipped.
  for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(1 - cl.noise[i][i], 0.15, 0.07) << i;
  // Ranked by self-confidence.
  for (size_t k = 1; k < cl.issues.size(); ++k)
    EXPECT_LE(cl.issues[k - 1].self_confidence, cl.issues[k].self_confidence);
}

TEST(ConfidentLearning, ClearErrors) {
  EXPECT_CONTAINS(finch::test::error_of([] {
                    fd::confident_learning({{0.9, 0.1, 0.0}, {0.2, 0.8, 0.0}}, {0, 1},
                                           fd::LabelIssueMethod::kConfidentJoint);
                  }),
                  "class 2 has no image");
  EXPECT_CONTAINS(
      finch::test::error_of([] {
        fd::confident_learning({{0.9, 0.1}}, {0, 1}, fd::LabelIssueMethod::kConfidentJoint);
      }),
      "1 probability rows for 2 labels");
  EXPECT_CONTAINS(finch::test::error_of([] { fd::parse_label_issue_method("magic"); }),
                  "prune_by_noise_rate");
}
