#include "finch/data/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <set>

#include "finch/core/error.h"
#include "test_support.h"

// Every batch holds K samples of each of P distinct classes, including a class with fewer
// than K samples (repeated), and the order depends only on (labels, seed, epoch).
TEST(PkSampler, ClassBalancedBatches) {
  std::vector<int64_t> labels;
  for (int c = 0; c < 5; ++c)
    for (int i = 0; i < (c == 4 ? 2 : 9 + c); ++i) labels.push_back(c);
  const int64_t p = 3, k = 4;
  auto order = finch::data::pk_order(labels, p, k, 11, 0);
  ASSERT_EQ(order.size(), labels.size() / (p * k) * (p * k));
  for (size_t b = 0; b < order.size(); b += p * k) {
    std::map<int64_t, int> counts;
    for (size_t i = b; i < b + p * k; ++i) ++counts[labels.at(order[i])];
    ASSERT_EQ(counts.size(), static_cast<size_t>(p)) << "batch " << b / (p * k);
    for (auto [label, n] : counts) EXPECT_EQ(n, k) << "class " << label;
  }
  EXPECT_EQ(order, finch::data::pk_order(labels, p, k, 11, 0));
  EXPECT_NE(order, finch::data::pk_order(labels, p, k, 11, 1));
  EXPECT_CONTAINS(finch::test::error_of([&] { finch::data::pk_order(labels, 6, 2, 0, 0); }),
                  "needs 6 classes but the training data has 5");
}

TEST(BalancedSampler, ClassSharesFollowThePower) {
  // Classes of 800, 150 and 50 samples.
  std::vector<int64_t> labels;
  for (int64_t c = 0; c < 3; ++c)
    for (int i = 0; i < (c == 0 ? 800 : c == 1 ? 150 : 50); ++i) labels.push_back(c);
  for (double power : {0.0, 0.5, 1.0}) {
    std::vector<double> share(3, 0.0);
    const int epochs = 20;
    for (int e = 0; e < epochs; ++e)
      for (size_t i : finch::data::balanced_order(labels, power, 7, e))
        share[labels.at(i)] += 1.0 / (epochs * labels.size());
    double total = 0;
    for (int n : {800, 150, 50}) total += std::pow(n, 1 - power);
    int c = 0;
    for (int n : {800, 150, 50})
      EXPECT_NEAR(share[c++], std::pow(n, 1 - power) / total, 0.01) << "power " << power;
  }
  // Deterministic in (seed, epoch); another epoch is another draw.
  EXPECT_EQ(finch::data::balanced_order(labels, 0.5, 7, 3),
            finch::data::balanced_order(labels, 0.5, 7, 3));
  EXPECT_NE(finch::data::balanced_order(labels, 0.5, 7, 3),
            finch::data::balanced_order(labels, 0.5, 7, 4));
  EXPECT_EQ(finch::data::balanced_order(labels, 0.5, 7, 3).size(), labels.size());
  EXPECT_CONTAINS(finch::test::error_of([&] { finch::data::balanced_order(labels, 1.5, 0, 0); }),
                  "data.balance_power must be in [0, 1]");
}
