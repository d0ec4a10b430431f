#include "finch/explain/tsne.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

namespace finch::explain {

torch::Tensor tsne_affinities(const torch::Tensor& x_in, double perplexity) {
  TORCH_CHECK(x_in.dim() == 2, "tsne_affinities: X must be [N, D]");
  const int64_t n = x_in.size(0);
  torch::Tensor x = x_in.to(torch::kFloat64);
  if (n < 2) return torch::zeros({n, n}, torch::kFloat64);
  perplexity = std::min(perplexity, static_cast<double>(n - 1));
  torch::Tensor sq = x.pow(2).sum(1);
  torch::Tensor d = (sq.view({-1, 1}) + sq.view({1, -1}) - 2 * x.matmul(x.t())).clamp_min(0);
  torch::Tensor off = 1 - torch::eye(n, torch::kFloat64);
  const double target = std::log(perplexity);  // entropy in nats
  // Bisection on beta = 1 / (2 sigma^2), all rows at once, in log space.
  torch::Tensor lo = torch::full({n, 1}, -50.0, torch::kFloat64);
  torch::Tensor hi = torch::full({n, 1}, 50.0, torch::kFloat64);
  // Distances scaled by each row's mean keep exp() in range for any feature scale.
  torch::Tensor scale = (d.sum(1, true) / (n - 1)).clamp_min(1e-12);
  torch::Tensor dn = d / scale;
  torch::Tensor p;
  for (int it = 0; it < 100; ++it) {
    torch::Tensor beta = ((lo + hi) / 2).exp();
    torch::Tensor logits = -dn * beta;
    logits = logits.masked_fill(off == 0, -std::numeric_limits<double>::infinity());
    p = torch::softmax(logits, 1);
    torch::Tensor entropy = -(p * torch::log(p.clamp_min(1e-300))).sum(1, true);
    // Too much entropy -> beta too small -> raise the lower bound.
    torch::Tensor too_flat = entropy > target;
    lo = torch::where(too_flat, (lo + hi) / 2, lo);
    hi = torch::where(too_flat, hi, (lo + hi) / 2);
  }
  torch::Tensor joint = (p + p.t()) / (2.0 * n);
  return joint / joint.sum();
}

namespace {

// The gradient of KL(P || Q) w.r.t. the map, and the KL itself only when asked for (its
// logarithms cost as much as the gradient, and the descent loop does not need it).
double kl_gradient(const torch::Tensor& p, const torch::Tensor& y, torch::Tensor& gradient,
                   bool with_kl) {
  torch::Tensor sq = y.pow(2).sum(1);
  torch::Tensor d = (sq.view({-1, 1}) + sq.view({1, -1}) - 2 * y.matmul(y.t())).clamp_min_(0);
  torch::Tensor num = (d += 1).reciprocal_();  // Student-t kernel 1 / (1 + |y_i - y_j|^2)
  num.fill_diagonal_(0);
  torch::Tensor q = num / num.sum();
  torch::Tensor pq = (p - q).mul_(num);  // [N, N]
  // sum_j pq_ij (y_i - y_j) = y_i * sum_j pq_ij - (pq y)_i
  gradient = 4.0 * (y * pq.sum(1, true) - pq.matmul(y));
  if (!with_kl) return 0;
  torch::Tensor mask = p > 0;
  torch::Tensor pm = p.masked_select(mask);
  return (pm * (pm / q.masked_select(mask).clamp_min(1e-300)).log()).sum().item<double>();
}

}  // namespace

double tsne_kl_gradient(const torch::Tensor& p, const torch::Tensor& y, torch::Tensor& gradient) {
  return kl_gradient(p, y, gradient, true);
}

TsneResult tsne(const torch::Tensor& x_in, const TsneOptions& options) {
  TORCH_CHECK(x_in.dim() == 2, "tsne: X must be [N, D]");
  TsneResult result;
  const int64_t total = x_in.size(0);
  result.chosen.resize(total);
  std::iota(result.chosen.begin(), result.chosen.end(), 0);
  if (total > options.max_points) {
    std::mt19937_64 rng(options.seed);
    std::shuffle(result.chosen.begin(), result.chosen.end(), rng);
    result.chosen.resize(options.max_points);
    std::sort(result.chosen.begin(), result.chosen.end());
  }
  const int64_t n = static_cast<int64_t>(result.chosen.size());
  torch::Tensor x = x_in.to(torch::kFloat64)
                        .index_select(0, torch::tensor(result.chosen, torch::kLong))
                        .contiguous();
  if (n < 3) {
    result.points = torch::zeros({n, 2}, torch::kFloat64);
    for (int64_t i = 0; i < n; ++i) result.points[i][0] = static_cast<double>(i);
    return result;
  }
  torch::Tensor p = tsne_affinities(x, options.perplexity);
  // PCA initialisation: the first two principal components, scaled to std 1e-4.
  torch::Tensor centered = x - x.mean(0, true);
  auto svd = torch::svd(centered);
  torch::Tensor y = centered.matmul(std::get<2>(svd).narrow(1, 0, std::min<int64_t>(2, x.size(1))));
  if (y.size(1) < 2) y = torch::cat({y, torch::zeros({n, 2 - y.size(1)}, torch::kFloat64)}, 1);
  const double sd = y.select(1, 0).std().item<double>();
  // A tiny seeded jitter breaks ties between identical points.
  torch::Tensor jitter = torch::empty({n, 2}, torch::kFloat64);
  {
    std::mt19937_64 rng(options.seed);
    std::normal_distribution<double> normal;
    auto acc = jitter.accessor<double, 2>();
    for (int64_t i = 0; i < n; ++i) acc[i][0] = normal(rng), acc[i][1] = normal(rng);
  }
  y = (sd > 0 ? y / sd : y) * 1e-4 + jitter * 1e-6;
  torch::Tensor update = torch::zeros_like(y), gains = torch::ones_like(y), gradient;
  // A fixed rate of 200 (the original paper's) diverges for small N, where each p_ij is large.
  const double learning_rate =
      options.learning_rate > 0
          ? options.learning_rate
          : std::max(static_cast<double>(n) / options.early_exaggeration / 4.0, 50.0);
  const torch::Tensor exaggerated = p * options.early_exaggeration;
  for (int it = 0; it < options.iterations; ++it) {
    const bool exaggerate = it < options.exaggeration_iterations;
    const double momentum = it < options.exaggeration_iterations ? 0.5 : 0.8;
    kl_gradient(exaggerate ? exaggerated : p, y, gradient, false);
    // Delta-bar-delta gains of the reference implementation.
    torch::Tensor same_sign = (gradient > 0) == (update > 0);
    gains = torch::where(same_sign, gains * 0.8, gains + 0.2).clamp_min(0.01);
    update = momentum * update - learning_rate * gains * gradient;
    y = y + update;
  }
  result.kl = tsne_kl_gradient(p, y, gradient);
  result.points = y;
  return result;
}

}  // namespace finch::explain
