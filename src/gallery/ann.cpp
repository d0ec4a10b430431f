#include "finch/gallery/ann.h"

#include <faiss/Index.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVF.h>
#include <faiss/index_factory.h>
#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "finch/core/error.h"

namespace finch::gallery {

struct AnnIndex::Impl {
  std::unique_ptr<faiss::Index> index;
};

AnnIndex::AnnIndex(const torch::Tensor& items, const AnnOptions& options)
    : impl_(std::make_unique<Impl>()) {
  TORCH_CHECK(items.dim() == 2, "AnnIndex: items must be [N, D]");
  const torch::Tensor x = items.to(torch::kFloat).contiguous();
  size_ = x.size(0);
  const int d = static_cast<int>(x.size(1));
  if (size_ == 0) throw Error("cannot index an empty gallery");
  if (options.kind == "hnsw") {
    if (options.hnsw_m < 2) throw Error("HNSW needs a graph degree >= 2");
    description_ = fmt::format("HNSW{},Flat", options.hnsw_m);
  } else if (options.kind == "ivf") {
    const int64_t nlist = options.nlist > 0
                              ? options.nlist
                              : std::max<int64_t>(1, static_cast<int64_t>(std::sqrt(size_)));
    // FAISS's k-means wants ~39 training points per cell; fewer gives poor cells.
    if (size_ < nlist)
      throw Error(fmt::format("IVF with {} cells needs at least {} items, the gallery has {}",
                              nlist, nlist, size_));
    description_ = fmt::format("IVF{},Flat", nlist);
  } else {
    throw Error("unknown index '" + options.kind + "' (exact, hnsw, ivf)");
  }
  try {
    impl_->index.reset(faiss::index_factory(d, description_.c_str(), faiss::METRIC_INNER_PRODUCT));
    if (auto* ivf = dynamic_cast<faiss::IndexIVF*>(impl_->index.get())) {
      // k-means on at most 64 points per cell, 10 iterations: FAISS's defaults (256, 25)
      // take minutes at 1M items on 2 cores for little recall.
      ivf->cp.max_points_per_centroid = 64;
      ivf->cp.niter = 10;
    }
    if (!impl_->index->is_trained) impl_->index->train(size_, x.data_ptr<float>());
    impl_->index->add(size_, x.data_ptr<float>());
    if (auto* hnsw = dynamic_cast<faiss::IndexHNSW*>(impl_->index.get()))
      hnsw->hnsw.efSearch = options.ef_search;
    if (auto* ivf = dynamic_cast<faiss::IndexIVF*>(impl_->index.get()))
      ivf->nprobe = static_cast<size_t>(std::max<int64_t>(1, options.nprobe));
  } catch (const std::exception& e) {
    throw Error(std::string("FAISS could not build ") + description_ + ": " + e.what());
  }
}

AnnIndex::~AnnIndex() = default;
AnnIndex::AnnIndex(AnnIndex&&) noexcept = default;

std::vector<std::vector<Neighbour>> AnnIndex::search(const torch::Tensor& queries,
                                                     int64_t k) const {
  const torch::Tensor q = queries.to(torch::kFloat).contiguous();
  const int64_t b = q.size(0);
  k = std::clamp<int64_t>(k, 1, size_);
  std::vector<float> distances(b * k);
  std::vector<faiss::Index::idx_t> labels(b * k);
  impl_->index->search(b, q.data_ptr<float>(), k, distances.data(), labels.data());
  std::vector<std::vector<Neighbour>> out(b);
  for (int64_t i = 0; i < b; ++i)
    for (int64_t j = 0; j < k; ++j)
      if (labels[i * k + j] >= 0) out[i].push_back({labels[i * k + j], distances[i * k + j]});
  return out;
}

double recall_at_k(const std::vector<std::vector<Neighbour>>& approximate,
                   const std::vector<std::vector<Neighbour>>& exact) {
  if (approximate.size() != exact.size() || exact.empty()) return 0;
  double total = 0;
  for (size_t q = 0; q < exact.size(); ++q) {
    std::set<int64_t> truth;
    for (const auto& n : exact[q]) truth.insert(n.item);
    size_t found = 0;
    for (const auto& n : approximate[q]) found += truth.count(n.item);
    total += truth.empty() ? 1.0 : static_cast<double>(found) / truth.size();
  }
  return total / exact.size();
}

}  // namespace finch::gallery
