// t-SNE: the KL gradient against central finite differences in float64, the affinities'
// invariants, and that two separated clusters stay separated in the map.
#include "finch/explain/tsne.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace fe = finch::explain;

TEST(Tsne, KlGradientMatchesFiniteDifferences) {
  torch::manual_seed(3);
  auto x = torch::randn({6, 4}, torch::kFloat64);
  auto p = fe::tsne_affinities(x, 2.0);
  auto y = torch::randn({6, 2}, torch::kFloat64);
  torch::Tensor gradient, unused;
  fe::tsne_kl_gradient(p, y, gradient);
  const double h = 1e-6;
  for (int64_t i = 0; i < 6; ++i) {
    for (int64_t k = 0; k < 2; ++k) {
      auto plus = y.clone(), minus = y.clone();
      plus[i][k] += h;
      minus[i][k] -= h;
      const double numeric =
          (fe::tsne_kl_gradient(p, plus, unused) - fe::tsne_kl_gradient(p, minus, unused)) /
          (2 * h);
      EXPECT_NEAR(gradient[i][k].item<double>(), numeric, 1e-7) << i << "," << k;
    }
  }
}

TEST(Tsne, AffinitiesAreAJointDistribution) {
  torch::manual_seed(0);
  auto p = fe::tsne_affinities(torch::randn({10, 3}), 3.0);
  EXPECT_NEAR(p.sum().item<double>(), 1.0, 1e-12);
  EXPECT_TRUE(p.allclose(p.t()));
  EXPECT_EQ(p.diagonal().abs().sum().item<double>(), 0.0);
  EXPECT_GT(p.min().item<double>(), -1e-15);
}

TEST(Tsne, SeparatedClustersStaySeparatedAndRunsAreDeterministic) {
  torch::manual_seed(1);
  auto a = torch::randn({15, 5}) + 10, b = torch::randn({15, 5}) - 10;
  auto x = torch::cat({a, b});
  fe::TsneOptions options;
  options.perplexity = 5;
  auto r = fe::tsne(x, options);
  ASSERT_EQ(r.points.sizes(), (std::vector<int64_t>{30, 2}));
  // Every point's nearest neighbour in the map is from its own cluster.
  auto d = torch::cdist(r.points, r.points) + torch::eye(30, torch::kFloat64) * 1e9;
  auto nearest = d.argmin(1);
  for (int64_t i = 0; i < 30; ++i) EXPECT_EQ(i < 15, nearest[i].item<int64_t>() < 15) << i;
  EXPECT_TRUE(fe::tsne(x, options).points.equal(r.points));
  options.max_points = 10;
  auto sub = fe::tsne(x, options);
  EXPECT_EQ(sub.chosen.size(), 10u);
  EXPECT_EQ(sub.points.size(0), 10);
}
