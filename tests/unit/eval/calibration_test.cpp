// Expected calibration error and its reliability bins, by hand.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "finch/eval/metrics.h"

namespace fev = finch::eval;

TEST(Calibration, EceByHand) {
  // 15 bins of width 1/15. Confidences 0.95 (right), 0.95 (wrong) share bin 14: acc 0.5,
  // conf 0.95; 0.30 (right) alone in bin 4 ((4/15, 5/15]): acc 1, conf 0.3; 0.0 goes to bin 0.
  auto c = fev::calibration({0.95, 0.95, 0.30, 0.0}, {true, false, true, false}, 15);
  ASSERT_EQ(c.bins.size(), 15u);
  EXPECT_EQ(c.bins[14].count, 2);
  EXPECT_EQ(c.bins[4].count, 1);
  EXPECT_EQ(c.bins[0].count, 1);
  EXPECT_NEAR(c.bins[14].accuracy, 0.5, 1e-12);
  EXPECT_NEAR(c.ece, 2.0 / 4 * 0.45 + 1.0 / 4 * 0.7 + 0.0, 1e-12);
  // A bin's upper edge belongs to it: 1/15 is in bin 0, not bin 1.
  auto edge = fev::calibration({1.0 / 15}, {true}, 15);
  EXPECT_EQ(edge.bins[0].count, 1);
}

TEST(Calibration, AccumulatorReportsEceInJsonAndText) {
  fev::MetricsAccumulator acc({"a", "b"});
  // Probabilities 0.75 / 0.25 (logit gap log 3): first right, second wrong -> ECE 0.25.
  const float l = std::log(3.0f);
  acc.add(torch::tensor({l, 0.f, l, 0.f}).view({2, 2}), torch::tensor({0, 1}));
  auto m = acc.finish();
  EXPECT_NEAR(m.calibration.ece, 0.25, 1e-6);
  auto j = fev::to_json(m);
  EXPECT_NEAR(j["ece"].get<double>(), 0.25, 1e-6);
  EXPECT_EQ(j["calibration"].size(), 15u);
  EXPECT_NE(fev::format_report(m).find("expected calibration error"), std::string::npos);
  auto table = fev::format_per_class_worst_first(m);
  EXPECT_LT(table.find("b "), table.find("a "));  // b: 0%, a: 100%
}
