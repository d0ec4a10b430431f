#pragma once
// Exact t-SNE (van der Maaten and Hinton, JMLR 2008) for embedding maps of an eval split:
// Gaussian input affinities calibrated to a perplexity, Student-t output affinities, KL
// divergence minimised by gradient descent with momentum, per-parameter gains and early
// exaggeration, from a PCA initialisation (scaled to std 1e-4, as scikit-learn does).
// Cost is O(N^2) memory and time per iteration: above `max_points` (default 2500) a seeded
// random subset is embedded.
#include <torch/types.h>

#include <cstdint>
#include <vector>

namespace finch::explain {

struct TsneOptions {
  double perplexity = 30;
  int iterations = 1000;
  double learning_rate = 0;  // 0 = scikit-learn's "auto": max(N / exaggeration / 4, 50)
  double early_exaggeration = 12;
  int exaggeration_iterations = 250;
  int64_t max_points = 2500;
  uint64_t seed = 0;
};

/// Joint input affinities P [N, N] (float64, symmetric, zero diagonal, sums to 1) of points
/// X [N, D]: each row's Gaussian bandwidth is found by bisection so that its perplexity
/// 2^H(P_i) equals `perplexity` (clamped to N - 1).
torch::Tensor tsne_affinities(const torch::Tensor& x, double perplexity);

/// KL(P || Q) of the map Y [N, 2] and its gradient
/// dC/dy_i = 4 sum_j (p_ij - q_ij)(y_i - y_j) / (1 + |y_i - y_j|^2), into `gradient` [N, 2].
double tsne_kl_gradient(const torch::Tensor& p, const torch::Tensor& y, torch::Tensor& gradient);

struct TsneResult {
  torch::Tensor points;         // [M, 2] float64
  std::vector<int64_t> chosen;  // row of X of each point (all rows when N <= max_points)
  double kl = 0;                // final KL divergence
};

/// Embeds X [N, D] in 2-D. Deterministic in options.seed.
TsneResult tsne(const torch::Tensor& x, const TsneOptions& options = {});

}  // namespace finch::explain
