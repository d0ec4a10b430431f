#include "finch/eval/metrics.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

using finch::eval::MetricsAccumulator;

namespace {

// One-hot-ish logits that predict `predicted`, with class `second` as runner-up.
torch::Tensor logits_for(const std::vector<std::pair<int, int>>& predicted_second, int classes) {
  torch::Tensor x = torch::zeros({static_cast<int64_t>(predicted_second.size()), classes});
  for (size_t i = 0; i < predicted_second.size(); ++i) {
    x[i][predicted_second[i].first] = 5.0;
    x[i][predicted_second[i].second] = 4.0;
  }
  return x;
}

}  // namespace

TEST(Metrics, HandComputedCase) {
  // Truth:      a a a b b c
  // Predicted:  a a b b a c   -> confusion [[2,1,0],[1,1,0],[0,0,1]]
  MetricsAccumulator acc({"a", "b", "c"});
  acc.add(logits_for({{0, 1}, {0, 2}, {1, 0}}, 3), torch::tensor({0, 0, 0}, torch::kInt64));
  acc.add(logits_for({{1, 2}, {0, 2}, {2, 1}}, 3), torch::tensor({1, 1, 2}, torch::kInt64));
  auto m = acc.finish();
  EXPECT_EQ(m.num_samples, 6);
  EXPECT_NEAR(m.top1, 4.0 / 6, 1e-12);
  EXPECT_NEAR(m.top5, 1.0, 1e-12);  // k clamps to 3 classes
  EXPECT_EQ(m.confusion, (std::vector<std::vector<int64_t>>{{2, 1, 0}, {1, 1, 0}, {0, 0, 1}}));
  // recall a 2/3, b 1/2, c 1 -> mean per-class accuracy 13/18
  EXPECT_NEAR(m.mean_class_accuracy, (2.0 / 3 + 0.5 + 1.0) / 3, 1e-12);
  EXPECT_NEAR(m.per_class[0].precision, 2.0 / 3, 1e-12);
  EXPECT_NEAR(m.per_class[1].precision, 0.5, 1e-12);
  EXPECT_NEAR(m.per_class[0].f1, 2.0 / 3, 1e-12);
  EXPECT_EQ(m.per_class[0].support, 3);
  EXPECT_NEAR(m.weighted_recall, m.top1, 1e-12);  // weighted recall equals accuracy
  ASSERT_EQ(m.most_confused.size(), 2u);
  EXPECT_EQ(m.most_confused[0].count, 1);
  // Cross-entropy of these logits, computed independently.
  double expected_loss = 0;
  // Logit of the true class per sample: 5, 5, 4 (runner-up), 5, 0 (neither), 5.
  for (double own : {5.0, 5.0, 4.0, 5.0, 0.0, 5.0}) {
    expected_loss += -(own - std::log(std::exp(5.0) + std::exp(4.0) + 1.0));
  }
  EXPECT_NEAR(m.loss, expected_loss / 6, 1e-6);
}

TEST(Metrics, Top5CountsRunnerUps) {
  MetricsAccumulator acc({"0", "1", "2", "3", "4", "5", "6"});
  torch::Tensor logits =
      torch::arange(7, torch::kFloat32).unsqueeze(0).repeat({2, 1});  // ranks 6,5,4,3,2
  acc.add(logits, torch::tensor({2, 1}, torch::kInt64));
  auto m = acc.finish();
  EXPECT_DOUBLE_EQ(m.top1, 0.0);
  EXPECT_DOUBLE_EQ(m.top5, 0.5);  // class 2 is 5th, class 1 is 6th
}

TEST(Metrics, JsonHasTheStableKeys) {
  MetricsAccumulator acc({"x", "y"});
  acc.add(torch::tensor({{1.0, 0.0}, {0.0, 1.0}}), torch::tensor({0, 0}, torch::kInt64));
  auto j = finch::eval::to_json(acc.finish());
  for (const char* key :
       {"top1", "top5", "mean_class_accuracy", "per_class", "confusion_matrix", "num_samples"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  EXPECT_EQ(j["per_class"][1]["support"], 0);
  EXPECT_DOUBLE_EQ(j["mean_class_accuracy"].get<double>(), 0.5);  // over classes present
  EXPECT_EQ(finch::eval::confusion_csv(acc.finish()),
            "true\\predicted,\"x\",\"y\"\n\"x\",1,1\n\"y\",0,0\n");
}

TEST(Metrics, RejectsBadShapes) {
  MetricsAccumulator acc({"x", "y"});
  EXPECT_THROW(acc.add(torch::zeros({2, 3}), torch::zeros({2}, torch::kInt64)), c10::Error);
  EXPECT_THROW(acc.add(torch::zeros({2, 2}), torch::tensor({0, 5}, torch::kInt64)), c10::Error);
}
