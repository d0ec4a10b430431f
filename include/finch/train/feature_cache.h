#pragma once
// Cached backbone features (`train.cache_features: true`): with a frozen backbone and a head
// that only classifies the pooled embedding, every image's embedding is computed once (eval
// transforms, no augmentation) and the head trains on the cached tensor in seconds per epoch.
#include <torch/types.h>

#include <filesystem>
#include <optional>
#include <string>

#include "finch/core/progress.h"
#include "finch/data/loader.h"
#include "finch/models/model.h"

namespace finch::train {

struct CachedFeatures {
  torch::Tensor embeddings;  // float32 [N, D], CPU
  torch::Tensor labels;      // int64 [N]
};

/// The backbone embeddings of every sample `loader` yields (unreadable images skipped as the
/// loader does), read from `file` when it was written under the same `key` (a description of
/// everything that determines them), else computed in eval mode and written there atomically.
CachedFeatures cached_embeddings(models::Classifier& model, data::Loader& loader,
                                 const torch::Device& device, const std::filesystem::path& file,
                                 const std::string& key, ProgressStyle progress,
                                 const std::string& label);

/// Shuffled mini-batches over cached features: the order depends only on (seed, epoch).
class CachedBatches {
 public:
  CachedBatches(const CachedFeatures& features, int64_t batch_size, bool drop_last, uint64_t seed);
  int64_t num_batches() const;
  void start_epoch(int64_t epoch, int64_t first_batch = 0);
  /// The next (embeddings, labels) batch of this epoch, or nullopt at its end.
  std::optional<std::pair<torch::Tensor, torch::Tensor>> next();

 private:
  const CachedFeatures& features_;
  int64_t batch_size_;
  bool drop_last_;
  uint64_t seed_;
  torch::Tensor order_;
  int64_t next_batch_ = 0;
};

}  // namespace finch::train
