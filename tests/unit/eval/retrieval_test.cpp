// Retrieval metrics on a hand-computed case, few-shot episodes (reproducible, errors), and the
// Chen et al. class split. The python3-torch recomputation from exported embeddings is in
// tests/integration/open_world_test.cpp.
#include "finch/eval/retrieval.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "finch/core/error.h"
#include "test_support.h"

namespace fe = finch::eval;

namespace {

// Unit vectors at these angles (degrees): cosine order = angular order.
torch::Tensor at_angles(const std::vector<double>& degrees) {
  std::vector<float> xy;
  for (double d : degrees) {
    xy.push_back(static_cast<float>(std::cos(d * M_PI / 180)));
    xy.push_back(static_cast<float>(std::sin(d * M_PI / 180)));
  }
  return torch::tensor(xy).reshape({-1, 2});
}

}  // namespace

// A 0 (class 0), B 12 (0), C 20 (1), D 45 (0), E 100 (1), F 250 (2, alone).
// Neighbours, nearest first:  A: B C D E F   B: C A D E F   C: B A D E F
//                             D: C B A E F   E: D C B A F
// R (other items of the class): A 2, B 2, C 1, D 2, E 1; F has none and is left out.
//   R@1: A only -> 1/5;  R@2: all but C -> 4/5;  R@4: all -> 1
//   R-precision: A 1/2, B 1/2, C 0, D 1/2, E 0 -> 0.3
//   MAP@R: A (1 + 0)/2 = 0.5, B (0 + 1/2)/2 = 0.25, C 0, D (0 + 1/2)/2 = 0.25, E 0 -> 0.2
TEST(Retrieval, HandComputedCase) {
  torch::Tensor x = at_angles({0, 12, 20, 45, 100, 250}) * 3.0;  // scale does not matter
  torch::Tensor y = torch::tensor({0, 0, 1, 0, 1, 2}, torch::kLong);
  auto m = fe::retrieval_metrics(x, y, {1, 2, 4, 8});
  EXPECT_EQ(m.queries, 5);
  EXPECT_EQ(m.lone_queries, 1);
  EXPECT_NEAR(m.recall_at_k[0], 0.2, 1e-9);
  EXPECT_NEAR(m.recall_at_k[1], 0.8, 1e-9);
  EXPECT_NEAR(m.recall_at_k[2], 1.0, 1e-9);
  EXPECT_NEAR(m.recall_at_k[3], 1.0, 1e-9);  // K above N - 1 counts all other items
  EXPECT_NEAR(m.r_precision, 0.3, 1e-9);
  EXPECT_NEAR(m.map_at_r, 0.2, 1e-9);
  auto j = fe::to_json(m);
  EXPECT_NEAR(j["recall_at_k"]["2"].get<double>(), 0.8, 1e-9);
}

TEST(Retrieval, PerfectClustersScoreOneAndErrorsAreClear) {
  torch::Tensor x = at_angles({0, 1, 2, 90, 91, 92, 180, 181});
  torch::Tensor y = torch::tensor({0, 0, 0, 1, 1, 1, 2, 2}, torch::kLong);
  auto m = fe::retrieval_metrics(x, y);
  EXPECT_DOUBLE_EQ(m.map_at_r, 1.0);
  EXPECT_DOUBLE_EQ(m.r_precision, 1.0);
  EXPECT_DOUBLE_EQ(m.recall_at_k[0], 1.0);
  EXPECT_CONTAINS(finch::test::error_of([] {
                    fe::retrieval_metrics(at_angles({0, 90}), torch::tensor({0, 1}));
                  }),
                  "no class has two items");
}

TEST(FewShot, SeparatedClustersAreSolvedAndEpisodesAreReproducible) {
  torch::manual_seed(0);
  // 8 classes of 30 noisy points around separate directions in 16-d.
  torch::Tensor centres = torch::randn({8, 16});
  torch::Tensor y = torch::arange(8).repeat_interleave(30);
  torch::Tensor x = centres.index_select(0, y) + 0.05 * torch::randn({240, 16});
  fe::FewShotOptions options;
  options.episodes = 50;
  auto results = fe::fewshot_evaluate(x, y, options);
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0].shots, 1);
  EXPECT_EQ(results[1].shots, 5);
  EXPECT_DOUBLE_EQ(results[1].accuracy, 1.0);
  EXPECT_DOUBLE_EQ(results[1].ci95, 0.0);

  // Heavy noise: accuracies vary by episode; the same seed gives the same numbers, another
  // seed other episodes, and 5 shots beat 1.
  torch::Tensor noisy = centres.index_select(0, y) + 1.2 * torch::randn({240, 16});
  auto a = fe::fewshot_evaluate(noisy, y, options);
  auto b = fe::fewshot_evaluate(noisy, y, options);
  options.seed = 7;
  auto c = fe::fewshot_evaluate(noisy, y, options);
  EXPECT_DOUBLE_EQ(a[0].accuracy, b[0].accuracy);
  EXPECT_DOUBLE_EQ(a[1].ci95, b[1].ci95);
  EXPECT_NE(a[0].accuracy, c[0].accuracy);
  EXPECT_GT(a[0].ci95, 0.0);
  EXPECT_GT(a[1].accuracy, a[0].accuracy);
  EXPECT_GT(a[0].accuracy, 0.2 + 0.05);  // above chance (1 / 5 ways)
}

TEST(FewShot, ClearErrors) {
  torch::Tensor x = torch::randn({40, 4});
  torch::Tensor y = torch::arange(4).repeat_interleave(10);
  fe::FewShotOptions options;
  options.ways = 5;
  EXPECT_CONTAINS(finch::test::error_of([&] { fe::fewshot_evaluate(x, y, options); }),
                  "--ways 5 is larger than the 4 classes");
  options.ways = 3;
  options.shots = {5};
  options.queries = 6;  // 11 > 10 items per class
  EXPECT_CONTAINS(finch::test::error_of([&] {
                    fe::fewshot_evaluate(x, y, options, {"ant", "bee", "cow", "dog"});
                  }),
                  "class 'ant' has 10 items, fewer than --shots 5 + --queries 6");
}

TEST(FewShot, ChenCubClassSplit) {
  auto base = fe::chen_cub_split("base", 200);
  auto val = fe::chen_cub_split("val", 200);
  auto novel = fe::chen_cub_split("novel", 200);
  EXPECT_EQ(base.size(), 100u);
  EXPECT_EQ(val.size(), 50u);
  EXPECT_EQ(novel.size(), 50u);
  EXPECT_EQ(base[1], 2);
  EXPECT_EQ(val[0], 1);
  EXPECT_EQ(novel[0], 3);
  EXPECT_EQ(novel.back(), 199);
  EXPECT_THROW(fe::chen_cub_split("test", 200), finch::Error);
}
