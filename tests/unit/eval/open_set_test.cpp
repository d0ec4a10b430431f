// Open-set scores and metrics on hand-computed cases. scikit-learn's roc_auc_score on scores
// a trained model exports is checked in tests/integration/open_world_test.cpp.
#include "finch/eval/open_set.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "finch/core/error.h"
#include "finch/data/class_list.h"
#include "test_support.h"

namespace fe = finch::eval;
using finch::test::error_of;

TEST(OpenSet, LogitScoresAreMspMaxLogitAndLogSumExp) {
  const torch::Tensor logits = torch::tensor({{2.0, 0.0, -1.0}, {0.5, 0.5, 0.5}});
  const auto msp = fe::logit_score(logits, fe::OpenSetScore::kMsp);
  EXPECT_NEAR(msp[0].item<double>(), std::exp(2.0) / (std::exp(2.0) + 1 + std::exp(-1.0)), 1e-12);
  EXPECT_NEAR(msp[1].item<double>(), 1.0 / 3, 1e-12);
  const auto max_logit = fe::logit_score(logits, fe::OpenSetScore::kMaxLogit);
  EXPECT_DOUBLE_EQ(max_logit[0].item<double>(), 2.0);
  const auto energy = fe::logit_score(logits, fe::OpenSetScore::kEnergy);
  EXPECT_NEAR(energy[1].item<double>(), 0.5 + std::log(3.0), 1e-12);
  EXPECT_THROW(fe::logit_score(logits, fe::OpenSetScore::kKnn), finch::Error);
  EXPECT_EQ(fe::parse_open_set_score("energy"), fe::OpenSetScore::kEnergy);
  EXPECT_CONTAINS(error_of([&] { fe::parse_open_set_score("odin"); }),
                  "scores: msp, maxlogit, energy, knn");
}

// known {3, 2, 1} vs unknown {0, 2}: of the 6 pairs, 4 won, 1 tied (2 = 2), 1 lost (1 < 2).
TEST(OpenSet, AurocCountsTiesAsHalf) {
  EXPECT_DOUBLE_EQ(fe::auroc({3, 2, 1}, {0, 2}), 4.5 / 6);
  EXPECT_DOUBLE_EQ(fe::auroc({5, 6}, {1, 2}), 1.0);
  EXPECT_DOUBLE_EQ(fe::auroc({1, 2}, {5, 6}), 0.0);
  EXPECT_DOUBLE_EQ(fe::auroc({1, 1}, {1}), 0.5);
  EXPECT_CONTAINS(error_of([&] { fe::auroc({1}, {}); }), "images of unknown classes");
  EXPECT_CONTAINS(error_of([&] { fe::auroc({}, {1}); }), "images of known classes");
}

TEST(OpenSet, ThresholdKeepsTheTprShareOfKnownsAndFprCountsAcceptedUnknowns) {
  std::vector<double> known;
  for (int i = 1; i <= 20; ++i) known.push_back(i);
  // 95% of 20 = 19 kept: the threshold is the 19th largest score, 2.
  EXPECT_DOUBLE_EQ(fe::threshold_for_tpr(known, 0.95), 2.0);
  EXPECT_DOUBLE_EQ(fe::threshold_for_tpr(known, 1.0), 1.0);
  EXPECT_DOUBLE_EQ(fe::threshold_for_tpr(known, 0.5), 11.0);
  EXPECT_DOUBLE_EQ(fe::fpr_at_tpr(known, {1.5, 2.0, 3.0}, 0.95), 2.0 / 3);
  EXPECT_CONTAINS(error_of([&] { fe::threshold_for_tpr(known, 0.0); }), "TPR must be in (0, 1]");
}

// Scores (correct?):  known 0.9 (yes), 0.8 (no), 0.6 (yes); unknown 0.7, 0.1.
// Lowering the threshold: 0.9 -> CCR 1/3 FPR 0; 0.8 -> 1/3, 0; 0.7 -> 1/3, 1/2;
// 0.6 -> 2/3, 1/2; 0.1 -> 2/3, 1. Area = 1/2 * 1/3 + 1/2 * 2/3 = 1/2.
TEST(OpenSet, OscrIsTheAreaUnderCorrectClassificationAgainstFalsePositives) {
  fe::OpenSetScores s{{0.9, 0.8, 0.6}, {0.7, 0.1}, {true, false, true}};
  EXPECT_DOUBLE_EQ(fe::oscr(s), 0.5);
  const auto m = fe::open_set_metrics(s, 0.95);
  EXPECT_DOUBLE_EQ(m.closed_accuracy, 2.0 / 3);
  EXPECT_DOUBLE_EQ(m.auroc, 5.0 / 6);   // only 0.6 < 0.7 of the 6 pairs is lost
  EXPECT_DOUBLE_EQ(m.fpr_at_tpr, 0.5);  // all 3 knowns kept: threshold 0.6 accepts 0.7
  // Perfect separation and every known right: OSCR 1; unknowns above all knowns: 0.
  EXPECT_DOUBLE_EQ(fe::oscr({{2, 3}, {0, 1}, {true, true}}), 1.0);
  EXPECT_DOUBLE_EQ(fe::oscr({{0, 1}, {2, 3}, {true, true}}), 0.0);
  // Ties enter together: a known and an unknown at the same score is a diagonal step.
  EXPECT_DOUBLE_EQ(fe::oscr({{1}, {1}, {true}}), 0.5);
}

TEST(OpenSet, RejectionCurveRejectsTheLowestScoresFirst) {
  // 4 images: known right 0.9, unknown 0.2, known wrong 0.5, known right 0.1.
  fe::OpenSetScores s{{0.9, 0.5, 0.1}, {0.2}, {true, false, true}};
  const auto curve = fe::rejection_curve(s, 4);
  ASSERT_EQ(curve.size(), 4u);
  EXPECT_DOUBLE_EQ(curve[0].rejected, 0.0);
  EXPECT_DOUBLE_EQ(curve[0].accuracy, 2.0 / 4);
  EXPECT_DOUBLE_EQ(curve[1].accuracy, 1.0 / 3);  // 0.1 (a right one) rejected
  EXPECT_DOUBLE_EQ(curve[2].accuracy, 1.0 / 2);  // then the unknown 0.2
  EXPECT_DOUBLE_EQ(curve[3].accuracy, 1.0);      // only 0.9 left
  EXPECT_DOUBLE_EQ(curve[3].threshold, 0.9);
}

TEST(ClassList, NamesIndicesRangesAndFiles) {
  const std::vector<std::string> names{"ant", "bee", "cat", "dog", "eel", "fox"};
  using finch::data::parse_class_list;
  EXPECT_EQ(parse_class_list("dog, ant", names, "--x"), (std::vector<int64_t>{0, 3}));
  EXPECT_EQ(parse_class_list("4:6,1,bee", names, "--x"), (std::vector<int64_t>{1, 4, 5}));
  finch::test::TempDir dir("finch-class-list");
  finch::test::write_text(dir.path() / "unseen.txt", "cat\n\n eel \n");
  EXPECT_EQ(parse_class_list("@" + (dir.path() / "unseen.txt").string(), names, "--x"),
            (std::vector<int64_t>{2, 4}));
  EXPECT_CONTAINS(error_of([&] { parse_class_list("cow", names, "--unknown-classes"); }),
                  "--unknown-classes: 'cow' is not a class of the dataset");
  EXPECT_CONTAINS(error_of([&] { parse_class_list("5:9", names, "--x"); }), "indices in [0, 6)");
  EXPECT_CONTAINS(error_of([&] { parse_class_list(" , ", names, "--x"); }),
                  "the class list is empty");
  EXPECT_CONTAINS(error_of([&] { parse_class_list("@/nonexistent/list.txt", names, "--x"); }),
                  "cannot read the class list file");
}
