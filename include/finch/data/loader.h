#pragma once
// Batches from a Dataset: worker threads decode and transform samples in parallel into a
// bounded queue of batches that the consumer takes in a deterministic order. The sample
// order of an epoch depends on (seed, epoch) only; each sample's augmentation on
// (seed, epoch, sample index) only, so results do not depend on thread scheduling.
#include <torch/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "finch/data/dataset.h"
#include "finch/data/transforms.h"

namespace finch::data {

struct LoaderOptions {
  int64_t batch_size = 64;
  bool shuffle = false;
  bool drop_last = false;
  int workers = 2;      // decode/augment threads (>= 1)
  int prefetch = 4;     // batches ready ahead of the consumer
  bool strict = false;  // a corrupt image throws instead of being skipped
  uint64_t seed = 0;
  /// When set, the sample order of an epoch (e.g. pk_order, whole batches of at most
  /// size() samples); replaces `shuffle`.
  std::function<std::vector<size_t>(int64_t epoch)> order;
  /// Data-parallel sharding: this loader delivers only shard `shard_rank` of `shard_count` of
  /// each epoch's order (shard_order), padded to equal shard lengths when `pad_shards`
  /// (training) and each sample exactly once otherwise (evaluation).
  int shard_rank = 0, shard_count = 1;
  bool pad_shards = true;
};

struct Batch {
  torch::Tensor images;         // float32 [B, 3, H, W]
  torch::Tensor labels;         // int64 [B]
  std::vector<size_t> indices;  // dataset indices of the rows
};

/// A skipped sample: which one and why.
struct SkippedSample {
  size_t index;
  std::string reason;
};

class Loader {
 public:
  Loader(DatasetPtr dataset, Pipeline pipeline, LoaderOptions options);
  ~Loader();

  /// Number of batches in one epoch (of this loader's shard).
  int64_t num_batches() const;
  /// Number of samples in one epoch (of this loader's shard, padding included).
  int64_t num_samples() const;
  /// Starts epoch `epoch`, beginning at batch `first_batch` (for mid-epoch resume).
  void start_epoch(int64_t epoch, int64_t first_batch = 0);
  /// Next batch of the current epoch, or nullopt at its end. Rethrows worker errors.
  std::optional<Batch> next();
  /// Samples skipped as unreadable in the current epoch so far.
  std::vector<SkippedSample> skipped() const;

  const Dataset& dataset() const { return *dataset_; }

 private:
  struct State;
  class BufferPool;
  void stop_workers();
  std::vector<size_t> order_of(int64_t epoch) const;
  DatasetPtr dataset_;
  int64_t epoch_samples_ = 0;  // length of every epoch's (sharded) order
  Pipeline pipeline_;
  LoaderOptions options_;
  std::unique_ptr<State> state_;
  std::shared_ptr<BufferPool> buffers_;  // batch memory reused across batches
};

/// The sample order of an epoch (a permutation when shuffling, identity otherwise).
std::vector<size_t> epoch_order(size_t size, bool shuffle, uint64_t seed, int64_t epoch);

/// The part of an epoch's `order` that rank `rank` of `world` takes, as torch's
/// DistributedSampler does: with `pad`, the order is extended by its own beginning to a multiple
/// of `world`; rank r takes positions r, r + world, r + 2 world, ... So the shards have equal
/// lengths and the ranks' batch k (local batch b) together are exactly the one-process batch k
/// of world x b samples. Without `pad` (evaluation) every sample is taken exactly once.
std::vector<size_t> shard_order(const std::vector<size_t>& order, int rank, int world, bool pad);

}  // namespace finch::data
