// `finch bench search`: exact and FAISS gallery search at 10k-1M items.
#include <torch/torch.h>

#include <chrono>

#include "finch/bench/bench.h"
#include "finch/core/error.h"
#include "finch/gallery/ann.h"
#include "finch/gallery/gallery.h"

namespace finch::bench {

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Embedding-like data: 1000 clusters in a 32-d latent space, projected to `dim` with a little
// isotropic noise (real embeddings have a low intrinsic dimension; uniformly random
// high-dimensional vectors have no meaningful nearest neighbours at all).
torch::Tensor clustered_unit_rows(int64_t n, const torch::Tensor& centres,
                                  const torch::Tensor& projection) {
  const int64_t dim = projection.size(1);
  torch::Tensor rows = torch::empty({n, dim});
  constexpr int64_t kChunk = 65536;  // bounded temporaries at 1M x 2048
  for (int64_t begin = 0; begin < n; begin += kChunk) {
    const int64_t len = std::min(kChunk, n - begin);
    torch::Tensor pick = torch::randint(centres.size(0), {len}, torch::kLong);
    torch::Tensor latent =
        centres.index_select(0, pick) + 0.25 * torch::randn({len, centres.size(1)});
    torch::Tensor x = torch::matmul(latent, projection) + 0.02 * torch::randn({len, dim});
    rows.narrow(0, begin, len)
        .copy_(torch::nn::functional::normalize(
            x, torch::nn::functional::NormalizeFuncOptions().dim(1)));
  }
  return rows;
}

}  // namespace

nlohmann::json bench_search(const SearchBenchOptions& options) {
  if (options.items < 1 || options.dim < 1 || options.queries < 1 || options.rounds < 1 ||
      options.k < 1)
    throw Error("bench search: items, dim, queries, rounds and k must be >= 1");
  if (options.threads > 0) torch::set_num_threads(static_cast<int>(options.threads));
  torch::manual_seed(0);
  c10::InferenceMode guard;
  const torch::Tensor centres = torch::randn({1000, 32});
  const torch::Tensor projection = torch::randn({32, options.dim}) / std::sqrt(32.0);
  const torch::Tensor items = clustered_unit_rows(options.items, centres, projection);
  const torch::Tensor queries = clustered_unit_rows(options.queries, centres, projection);
  auto timed = [&](const std::function<std::vector<std::vector<gallery::Neighbour>>()>& search,
                   std::vector<std::vector<gallery::Neighbour>>& hits) {
    std::vector<double> ms;
    hits = search();  // warm-up
    for (int64_t r = 0; r < options.rounds; ++r) {
      const auto start = std::chrono::steady_clock::now();
      hits = search();
      ms.push_back(1000 * seconds_since(start));
    }
    return percentile(ms, 50);
  };
  std::vector<std::vector<gallery::Neighbour>> exact, approximate;
  const double exact_ms =
      timed([&] { return gallery::exact_search(queries, items, options.k); }, exact);
  nlohmann::json out{{"bench", "search"},
                     {"items", options.items},
                     {"dim", options.dim},
                     {"queries", options.queries},
                     {"k", options.k},
                     {"threads", torch::get_num_threads()},
                     {"gallery_mib", items.numel() * 4.0 / (1 << 20)},
                     {"exact_ms_per_batch", exact_ms},
                     {"exact_ms_per_query", exact_ms / options.queries},
                     {"index", options.index}};
  if (options.index != "exact") {
    gallery::AnnOptions ann;
    ann.kind = options.index;
    ann.nprobe = options.nprobe;
    const auto start = std::chrono::steady_clock::now();
    gallery::AnnIndex index(items, ann);
    out["index_build_s"] = seconds_since(start);
    out["index_description"] = index.description();
    const double ann_ms = timed([&] { return index.search(queries, options.k); }, approximate);
    out["ann_ms_per_batch"] = ann_ms;
    out["ann_ms_per_query"] = ann_ms / options.queries;
    out["recall_at_k_vs_exact"] = gallery::recall_at_k(approximate, exact);
    out["nprobe"] = options.nprobe;
  }
  out["peak_rss_mib"] = peak_rss_mib();
  out["load_avg_1min"] = load_average_1min();
  return out;
}

}  // namespace finch::bench
