#pragma once
// Approximate nearest-neighbour search for large galleries through FAISS (never a home-made
// index): HNSW (graph, no training) or IVF-Flat (k-means cells, `nprobe` of them scanned),
// both on inner product, which is cosine for the gallery's unit-length rows.
#include <torch/types.h>

#include <memory>
#include <string>
#include <vector>

#include "finch/gallery/gallery.h"

namespace finch::gallery {

struct AnnOptions {
  std::string kind = "hnsw";  // hnsw | ivf
  int hnsw_m = 32;            // graph degree
  int ef_search = 128;        // HNSW search breadth
  int64_t nlist = 0;          // IVF cells (0: about sqrt(N)); k-means on <= 64 points per cell
  int64_t nprobe = 16;        // IVF cells scanned per query
};

class AnnIndex {
 public:
  /// Builds the index over items [N, D] (unit rows, float32). Throws finch::Error for an
  /// unknown kind or too few items to train IVF.
  AnnIndex(const torch::Tensor& items, const AnnOptions& options);
  ~AnnIndex();
  AnnIndex(AnnIndex&&) noexcept;
  /// The k nearest items of each query row [B, D], best first (k clamped to N).
  std::vector<std::vector<Neighbour>> search(const torch::Tensor& queries, int64_t k) const;
  /// "HNSW32,Flat" etc.: what was built.
  const std::string& description() const { return description_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string description_;
  int64_t size_ = 0;
};

/// Share of the exact top-k found by the approximate top-k, averaged over queries: the
/// recall@k that `finch search` prints for an approximate index.
double recall_at_k(const std::vector<std::vector<Neighbour>>& approximate,
                   const std::vector<std::vector<Neighbour>>& exact);

}  // namespace finch::gallery
