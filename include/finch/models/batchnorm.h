#pragma once
// finch's BatchNorm2d: torchvision's BatchNorm2d (same parameter and buffer names, same
// results), plus SyncBatchNorm for data-parallel training (`train.sync_bn`): in training its
// mean and variance are those of the global batch over every rank, and its backward pass
// all-reduces the two per-channel sums the input gradient needs, as torch.nn.SyncBatchNorm
// does. Every backbone and head builds its BatchNorms from this class so that the trainer can
// switch synchronisation on without knowing the models. LibTorch's own forward() is not
// virtual, hence a class of our own rather than a hook.
#include <torch/nn/modules/batchnorm.h>

#include <memory>

namespace finch::models {

/// Sums tensors over the ranks of a data-parallel job (train/distributed.h provides it).
class BatchStatsSync {
 public:
  virtual ~BatchStatsSync() = default;
  /// In place: the element-wise sum over ranks. Every rank calls it in the same order.
  virtual void all_reduce_sum(torch::Tensor& tensor) = 0;
};

class BatchNorm2dImpl : public torch::nn::BatchNorm2dImpl {
 public:
  explicit BatchNorm2dImpl(int64_t features) : torch::nn::BatchNorm2dImpl(features) {}
  explicit BatchNorm2dImpl(const torch::nn::BatchNormOptions& options)
      : torch::nn::BatchNorm2dImpl(options) {}

  /// [N, C, H, W] -> [N, C, H, W]. With a sync set and in training: global-batch statistics.
  torch::Tensor forward(const torch::Tensor& input);

  std::shared_ptr<BatchStatsSync> sync;  // null: an ordinary BatchNorm2d
};
TORCH_MODULE(BatchNorm2d);

/// Sets (or with null clears) `sync` on every finch BatchNorm2d in `module`; returns how many.
int64_t set_batch_stats_sync(torch::nn::Module& module,
                             const std::shared_ptr<BatchStatsSync>& sync);

}  // namespace finch::models
