#pragma once
// The open-world evaluation protocols of the fine-grained literature, on embeddings:
//   retrieval (Metric Learning Reality Check; CUB / Cars class-disjoint halves): every item a
//     query against all other items of the split;
//   few-shot (Chen et al. 2019, "A closer look at few-shot classification"): N-way K-shot
//     episodes of held-out classes, classified by the nearest class mean of the support set.
#include <torch/types.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace finch::eval {

/// Definitions as pytorch-metric-learning's AccuracyCalculator (query and reference set the
/// same, the query itself excluded; queries whose class has no other item are left out, as
/// its "lone query labels"), cosine similarity of unit rows. For a query with R other
/// items of its class and relevance rel(i) of its i-th neighbour:
///   Recall@K     1 when one of the K nearest has the query's class (the literature's R@K;
///                R@1 = AccuracyCalculator's precision_at_1)
///   R-precision  (same-class items among the R nearest) / R
///   MAP@R        (1/R) sum_{i<=R} rel(i) * precision@i
/// each averaged over queries.
struct RetrievalMetrics {
  std::vector<int64_t> ks;
  std::vector<double> recall_at_k;  // one per ks
  double map_at_r = 0, r_precision = 0;
  int64_t queries = 0;       // queries scored
  int64_t lone_queries = 0;  // queries left out: no other item of their class
};

/// embeddings [N, D] (L2-normalised here), labels [N] int64. Memory O(block x N).
RetrievalMetrics retrieval_metrics(const torch::Tensor& embeddings, const torch::Tensor& labels,
                                   const std::vector<int64_t>& ks = {1, 2, 4, 8});

nlohmann::json to_json(const RetrievalMetrics& metrics);
std::string format_retrieval(const RetrievalMetrics& metrics);

struct FewShotOptions {
  int64_t ways = 5;
  std::vector<int64_t> shots{1, 5};
  int64_t queries = 15;  // per class and episode
  int64_t episodes = 600;
  uint64_t seed = 0;
};

struct FewShotResult {
  int64_t shots = 0;
  double accuracy = 0;  // mean over episodes
  double ci95 = 0;      // 1.96 sd / sqrt(episodes)
  int64_t episodes = 0;
};

/// For each shot count: episodes of `ways` classes drawn from the classes present, each with
/// `shots` support and `queries` query items drawn without overlap; each query goes to the
/// class whose support mean (of L2-normalised embeddings) is nearest in Euclidean distance
/// (ProtoNet's rule, Chen et al.'s evaluation). Episode e of shot count s depends only on
/// (seed, s, e). Throws finch::Error when ways exceeds the number of classes, or when a class
/// has fewer than shots + queries items (naming it, with `class_names`).
std::vector<FewShotResult> fewshot_evaluate(const torch::Tensor& embeddings,
                                            const torch::Tensor& labels,
                                            const FewShotOptions& options,
                                            const std::vector<std::string>& class_names = {});

nlohmann::json to_json(const std::vector<FewShotResult>& results, const FewShotOptions& options);

/// The class split of Chen et al. 2019 for CUB over the sorted class folders: base = even
/// indices, val = index % 4 == 1, novel = index % 4 == 3. Returns the class indices of
/// `part` ("base", "val" or "novel") among `num_classes`; throws finch::Error otherwise.
std::vector<int64_t> chen_cub_split(const std::string& part, int64_t num_classes);

}  // namespace finch::eval
