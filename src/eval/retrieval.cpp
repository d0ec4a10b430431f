#include "finch/eval/retrieval.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "finch/core/error.h"
#include "finch/core/rng.h"

namespace finch::eval {

namespace {

torch::Tensor unit_rows(const torch::Tensor& x) {
  return torch::nn::functional::normalize(
      x.to(torch::kFloat), torch::nn::functional::NormalizeFuncOptions().dim(1).eps(1e-12));
}

}  // namespace

RetrievalMetrics retrieval_metrics(const torch::Tensor& embeddings, const torch::Tensor& labels,
                                   const std::vector<int64_t>& ks) {
  TORCH_CHECK(embeddings.dim() == 2 && labels.dim() == 1 && labels.size(0) == embeddings.size(0),
              "retrieval_metrics: embeddings ", embeddings.sizes(), " and labels ", labels.sizes());
  RetrievalMetrics m;
  m.ks = ks;
  m.recall_at_k.assign(ks.size(), 0.0);
  const int64_t n = embeddings.size(0);
  if (n < 2) throw Error("retrieval needs at least 2 items");
  for (int64_t k : ks)
    if (k < 1) throw Error("Recall@K needs K >= 1");
  c10::InferenceMode guard;
  const torch::Tensor x = unit_rows(embeddings);
  const torch::Tensor y = labels.to(torch::kLong).contiguous();
  // R of each query: the other items of its class.
  const int64_t max_label = y.max().item<int64_t>();
  torch::Tensor class_counts = torch::bincount(y, {}, max_label + 1);
  const torch::Tensor r_all = class_counts.index_select(0, y) - 1;
  const int64_t max_r = r_all.max().item<int64_t>();
  const int64_t max_k = *std::max_element(ks.begin(), ks.end());
  const int64_t depth = std::min(n - 1, std::max(max_r, max_k));
  auto r_of = r_all.accessor<int64_t, 1>();
  double map_sum = 0, rp_sum = 0;
  std::vector<double> hit_sum(ks.size(), 0.0);
  // Queries in blocks: each block's similarity row to all items, itself excluded.
  const int64_t block = std::max<int64_t>(1, (int64_t{1} << 26) / std::max<int64_t>(n, 1));
  for (int64_t begin = 0; begin < n; begin += block) {
    const int64_t len = std::min(block, n - begin);
    torch::Tensor sim = torch::matmul(x.narrow(0, begin, len), x.t());
    torch::Tensor self = torch::arange(begin, begin + len, torch::kLong);
    sim.index_put_({torch::arange(len, torch::kLong), self}, -INFINITY);
    torch::Tensor order = std::get<1>(sim.topk(depth, 1));  // [len, depth], best first
    torch::Tensor relevant = y.index_select(0, order.reshape(-1))
                                 .reshape({len, depth})
                                 .eq(y.narrow(0, begin, len).unsqueeze(1));
    auto rel = relevant.accessor<bool, 2>();
    for (int64_t q = 0; q < len; ++q) {
      const int64_t r = r_of[begin + q];
      if (r == 0) {
        ++m.lone_queries;
        continue;
      }
      ++m.queries;
      for (size_t j = 0; j < ks.size(); ++j) {
        const int64_t k = std::min(ks[j], depth);
        for (int64_t i = 0; i < k; ++i)
          if (rel[q][i]) {
            hit_sum[j] += 1;
            break;
          }
      }
      double hits = 0, ap = 0;
      for (int64_t i = 0; i < r; ++i) {
        if (!rel[q][i]) continue;
        hits += 1;
        ap += hits / static_cast<double>(i + 1);
      }
      map_sum += ap / r;
      rp_sum += hits / r;
    }
  }
  if (m.queries == 0)
    throw Error("retrieval: no class has two items, so no query has a relevant neighbour");
  for (size_t j = 0; j < ks.size(); ++j) m.recall_at_k[j] = hit_sum[j] / m.queries;
  m.map_at_r = map_sum / m.queries;
  m.r_precision = rp_sum / m.queries;
  return m;
}

nlohmann::json to_json(const RetrievalMetrics& m) {
  nlohmann::json recall = nlohmann::json::object();
  for (size_t j = 0; j < m.ks.size(); ++j) recall[std::to_string(m.ks[j])] = m.recall_at_k[j];
  return {{"recall_at_k", recall},
          {"map_at_r", m.map_at_r},
          {"r_precision", m.r_precision},
          {"queries", m.queries},
          {"lone_queries", m.lone_queries}};
}

std::string format_retrieval(const RetrievalMetrics& m) {
  std::string out = fmt::format("retrieval over {} queries (each against all others)\n", m.queries);
  for (size_t j = 0; j < m.ks.size(); ++j)
    out += fmt::format("  Recall@{:<3d} {:6.2f}%\n", m.ks[j], 100 * m.recall_at_k[j]);
  out += fmt::format("  MAP@R       {:6.2f}%\n  R-precision {:6.2f}%\n", 100 * m.map_at_r,
                     100 * m.r_precision);
  if (m.lone_queries)
    out += fmt::format("  ({} queries left out: no other item of their class)\n", m.lone_queries);
  return out;
}

// --- few-shot -------------------------------------------------------------------------------

std::vector<FewShotResult> fewshot_evaluate(const torch::Tensor& embeddings,
                                            const torch::Tensor& labels,
                                            const FewShotOptions& options,
                                            const std::vector<std::string>& class_names) {
  TORCH_CHECK(embeddings.dim() == 2 && labels.dim() == 1 && labels.size(0) == embeddings.size(0),
              "fewshot_evaluate: embeddings ", embeddings.sizes(), " and labels ", labels.sizes());
  if (options.ways < 2) throw Error("--ways must be >= 2");
  if (options.queries < 1) throw Error("--queries must be >= 1");
  if (options.episodes < 1) throw Error("--episodes must be >= 1");
  if (options.shots.empty()) throw Error("--shots lists no shot count");
  c10::InferenceMode guard;
  const torch::Tensor x = unit_rows(embeddings);
  // Items of each class present.
  std::map<int64_t, std::vector<int64_t>> by_class;
  auto y = labels.to(torch::kLong).contiguous();
  auto ya = y.accessor<int64_t, 1>();
  for (int64_t i = 0; i < y.size(0); ++i) by_class[ya[i]].push_back(i);
  std::vector<int64_t> classes;
  for (const auto& [c, items] : by_class) classes.push_back(c);
  if (options.ways > static_cast<int64_t>(classes.size()))
    throw Error(fmt::format("--ways {} is larger than the {} classes of the evaluation data",
                            options.ways, classes.size()));
  auto name = [&](int64_t c) {
    return c >= 0 && c < static_cast<int64_t>(class_names.size()) ? class_names[c]
                                                                  : std::to_string(c);
  };
  std::vector<FewShotResult> results;
  for (int64_t shots : options.shots) {
    if (shots < 1) throw Error("--shots must all be >= 1");
    for (const auto& [c, items] : by_class)
      if (static_cast<int64_t>(items.size()) < shots + options.queries)
        throw Error(fmt::format(
            "class '{}' has {} items, fewer than --shots {} + --queries {}: lower them or "
            "leave the class out (data.classes / data.class_range)",
            name(c), items.size(), shots, options.queries));
    std::vector<double> accuracies;
    for (int64_t e = 0; e < options.episodes; ++e) {
      Rng rng(derive_seed(options.seed, static_cast<uint64_t>(shots), static_cast<uint64_t>(e)));
      // Partial Fisher-Yates: the first `ways` classes, then each class's first items.
      std::vector<int64_t> pool = classes;
      for (int64_t i = 0; i < options.ways; ++i)
        std::swap(pool[i], pool[i + rng.below(pool.size() - i)]);
      std::vector<torch::Tensor> prototypes;
      std::vector<int64_t> query_rows, query_way;
      for (int64_t w = 0; w < options.ways; ++w) {
        std::vector<int64_t> items = by_class[pool[w]];
        const int64_t take = shots + options.queries;
        for (int64_t i = 0; i < take; ++i)
          std::swap(items[i], items[i + rng.below(items.size() - i)]);
        torch::Tensor support = x.index_select(
            0, torch::tensor(std::vector<int64_t>(items.begin(), items.begin() + shots)));
        prototypes.push_back(support.mean(0));
        for (int64_t i = shots; i < take; ++i) {
          query_rows.push_back(items[i]);
          query_way.push_back(w);
        }
      }
      torch::Tensor queries = x.index_select(0, torch::tensor(query_rows));
      torch::Tensor distances = torch::cdist(queries, torch::stack(prototypes));
      torch::Tensor predicted = distances.argmin(1);
      const double correct = predicted.eq(torch::tensor(query_way)).sum().item<int64_t>();
      accuracies.push_back(correct / static_cast<double>(query_rows.size()));
    }
    double mean = 0;
    for (double a : accuracies) mean += a;
    mean /= accuracies.size();
    double var = 0;
    for (double a : accuracies) var += (a - mean) * (a - mean);
    // Population sd, as Chen et al.'s code (np.std) reports it.
    const double sd = std::sqrt(var / accuracies.size());
    results.push_back({shots, mean, 1.96 * sd / std::sqrt(static_cast<double>(accuracies.size())),
                       options.episodes});
  }
  return results;
}

nlohmann::json to_json(const std::vector<FewShotResult>& results, const FewShotOptions& options) {
  nlohmann::json shots = nlohmann::json::array();
  for (const auto& r : results)
    shots.push_back(
        {{"shots", r.shots}, {"accuracy", r.accuracy}, {"ci95", r.ci95}, {"episodes", r.episodes}});
  return {{"ways", options.ways},
          {"queries", options.queries},
          {"seed", options.seed},
          {"results", shots}};
}

std::vector<int64_t> chen_cub_split(const std::string& part, int64_t num_classes) {
  std::vector<int64_t> out;
  for (int64_t i = 0; i < num_classes; ++i) {
    const bool keep = part == "base" ? i % 2 == 0 : part == "val" ? i % 4 == 1 : i % 4 == 3;
    if (keep) out.push_back(i);
  }
  if (part != "base" && part != "val" && part != "novel")
    throw Error("unknown class split part '" + part + "' (base, val, novel)");
  return out;
}

}  // namespace finch::eval
