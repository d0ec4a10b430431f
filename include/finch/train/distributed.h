#pragma once
// Data-parallel training and evaluation on PyTorch's own collective engine (c10d): the ranks
// meet through a TCPStore and exchange tensors with ProcessGroupGloo on CPU, launched by
// `torchrun --no-python finch ...` (or `finch train --nproc N`). Outside a launcher the world
// has one rank and nothing here talks to anybody.
//
// The semantics are PyTorch DistributedDataParallel's: parameters and buffers are broadcast
// from rank 0 at the start; after each backward the gradients are averaged across ranks in
// ~25 MB buckets (reverse parameter order), so with per-rank mean losses the update equals
// one process on the global batch (world size x train.batch_size).
//
// c10d's headers (and gloo's) stay inside distributed.cpp: this header is all other code sees.
#include <torch/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace finch::eval {
class MetricsAccumulator;  // eval/metrics.h
}
namespace finch::models {
class BatchStatsSync;  // models/batchnorm.h
}

namespace finch::train {

/// Where this process stands in a launch, from torchrun's environment variables.
struct DistEnv {
  int rank = 0, world_size = 1;
  int local_rank = 0, local_world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 0;
  int restart_count = 0;           // TORCHELASTIC_RESTART_COUNT: > 0 after a restart
  bool agent_hosts_store = false;  // TORCHELASTIC_USE_AGENT_STORE=True: torchrun's agent hosts it

  bool distributed() const { return world_size > 1; }
  /// RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT,
  /// TORCHELASTIC_RESTART_COUNT, TORCHELASTIC_USE_AGENT_STORE. Without WORLD_SIZE: one rank.
  /// Throws finch::Error naming the variable when one is malformed or inconsistent.
  static DistEnv from_environment();
  /// "rank 1 of 2" (empty for one rank), for messages.
  std::string describe() const;
};

/// The ranks of one job. All calls are collective: every rank makes the same calls in the same
/// order. Errors (a peer died, the timeout passed) throw finch::Error saying what was being
/// done and which ranks were last seen where.
class ProcessGroup {
 public:
  /// Connects to the job described by `env` (blocks until every rank has joined, at most
  /// `timeout`). `timeout` also bounds every later collective.
  static std::shared_ptr<ProcessGroup> connect(const DistEnv& env,
                                               std::chrono::milliseconds timeout);
  ~ProcessGroup();

  int rank() const;
  int size() const;

  /// Every tensor of `tensors` takes rank `root`'s values (in place; same shapes everywhere).
  void broadcast(std::vector<torch::Tensor>& tensors, int root = 0, const std::string& what = "");
  /// In place: the element-wise sum over ranks.
  void all_reduce_sum(std::vector<torch::Tensor>& tensors, const std::string& what = "");
  /// Starts summing `tensor` in place; the returned handle's wait() finishes it. Lets several
  /// buckets travel at once.
  class Pending {
   public:
    virtual ~Pending() = default;
    virtual void wait() = 0;
  };
  std::unique_ptr<Pending> all_reduce_sum_async(torch::Tensor tensor, const std::string& what);
  /// A 1-d tensor of any length from every rank, in rank order.
  std::vector<torch::Tensor> all_gather_varying(const torch::Tensor& tensor,
                                                const std::string& what = "");
  void barrier(const std::string& what = "");

  /// Throws finch::Error on every rank when the ranks' `value`s differ (e.g. a hash of the
  /// configuration), naming `what` and the first rank that differs from rank 0.
  void require_same(const std::string& what, const std::string& value);

  /// Records where this rank is (e.g. "epoch 2, step 17") in the store, so that a peer that
  /// fails can say where every rank was last seen.
  void note_progress(const std::string& where);

 private:
  struct Impl;
  explicit ProcessGroup(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// Averages gradients across ranks, as DDP does: the parameters that require a gradient are
/// packed into buckets of about `bucket_bytes` in reverse registration order (the order
/// backward produces them), each bucket is flattened and summed with one all-reduce and divided
/// by the world size. With `overlap`, autograd hooks copy each gradient into its bucket as
/// backward produces it and a bucket's all-reduce starts as soon as it is full (buckets start in
/// the same order on every rank), so communication runs while backward computes the earlier
/// layers; without it every bucket starts after backward (all in flight at once). A parameter
/// whose gradient is undefined on every rank stays undefined (the optimizer skips it, as in
/// one process); one defined on some ranks only counts as zero where it is missing. Each
/// parameter must receive its gradient at most once per backward (as DDP requires).
class GradientReducer {
 public:
  GradientReducer(std::shared_ptr<ProcessGroup> group, std::vector<torch::Tensor> parameters,
                  int64_t bucket_bytes = 25 << 20, bool overlap = false);
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  /// Call after backward and before the optimizer step. `flags` (e.g. "my loss is NaN", "I was
  /// interrupted") travel in one small all-reduce with the gradients' bookkeeping; returns
  /// their sums over ranks, so that every rank takes the same decision at the same step.
  std::vector<int64_t> average(const std::vector<int64_t>& flags = {});

  int64_t bucket_count() const { return static_cast<int64_t>(buckets_.size()); }
  bool overlaps() const { return overlap_; }
  /// Payload bytes each rank sends into the all-reduces of one step (gradients only).
  int64_t bytes_per_step() const { return bytes_per_step_; }
  /// Seconds spent in average() so far (the communication backward did not hide, packing).
  double seconds() const { return seconds_; }

 private:
  void on_gradient(size_t k, const torch::Tensor& grad);  // an overlap hook
  void launch_ready_buckets(bool all);
  std::shared_ptr<ProcessGroup> group_;
  std::vector<torch::Tensor> parameters_;
  std::vector<std::vector<size_t>> buckets_;  // indices into parameters_
  std::vector<size_t> bucket_of_;             // per parameter
  std::vector<int64_t> offset_of_;            // per parameter: its place in the bucket
  std::vector<torch::Tensor> flats_;          // per bucket: the flattened gradients
  std::vector<char> received_;                // per parameter, this step (overlap)
  std::vector<size_t> received_in_bucket_;    // per bucket, this step (overlap)
  std::vector<std::unique_ptr<ProcessGroup::Pending>> pending_;  // per bucket, this step
  size_t next_bucket_ = 0;                                       // next to start, in order
  std::vector<unsigned> hooks_;
  bool overlap_ = false;
  int64_t bytes_per_step_ = 0;
  double seconds_ = 0;
};

/// A free TCP port on 127.0.0.1 (the kernel picks it and it is released at once), for rank 0's
/// store when finch starts the ranks itself (`finch train --nproc`, tests).
int free_loopback_port();

/// SyncBatchNorm's statistics sums over the ranks of `group` (models::set_batch_stats_sync).
std::shared_ptr<models::BatchStatsSync> batch_stats_sync(std::shared_ptr<ProcessGroup> group);

/// For EvalOptions::combine: replaces a rank's accumulator by every rank's shares merged in
/// rank order (all ranks end with the same metrics). Empty (no merging) without a group.
std::function<void(eval::MetricsAccumulator&)> merge_metrics_over_ranks(ProcessGroup* group);

}  // namespace finch::train
