#pragma once
// Resume checkpoints: RUN_DIR/checkpoint/{model.safetensors, optimizer.pt, state.json} (and
// objective.safetensors when the loss has state).
// A new checkpoint is written to checkpoint.new/ and swapped in with renames, so a crash
// at any moment leaves one complete checkpoint (checkpoint/ or, mid-swap, checkpoint.old/).
#include <torch/optim/optimizer.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>

#include "finch/models/model.h"

namespace finch::train {

/// Where training stands. Randomness is a function of (seed, epoch, step), so this plus
/// the weights and optimizer state is everything needed to continue exactly.
struct TrainState {
  int64_t epoch = 0;         // 0-based epoch in progress (or next to start)
  int64_t batches_done = 0;  // batches of `epoch` already trained
  int64_t global_step = 0;   // optimizer steps taken in all
  double best_val_acc = -1;  // best validation top-1 so far (-1: none yet)
  int64_t best_epoch = -1;
  // Running sums of the epoch in progress, so a mid-epoch resume reports whole-epoch figures.
  double loss_sum = 0;
  int64_t correct = 0, seen = 0;
  double train_seconds = 0;
  // The global batch (world size x per-rank batch) batches_done counts in, so that a run
  // resumed at another world size starts at the same sample of the epoch.
  int64_t global_batch = 0;
  // The loss of the run's first step: what "diverging" is measured against (train/health.h);
  // 0 = unknown (a checkpoint from before it was kept).
  double initial_loss = 0;

  nlohmann::json to_json() const;
  static TrainState from_json(const nlohmann::json& j);
};

/// `objective`: the loss module whose buffers (centre-loss centres) are saved too, if any.
void save_checkpoint(const std::filesystem::path& run_dir, models::Classifier& model,
                     torch::optim::Optimizer& optimizer, const TrainState& state,
                     const torch::nn::Module* objective = nullptr);

/// Loads the checkpoint of `run_dir` into model, optimizer (and objective); nullopt when there
/// is none. Throws finch::Error when one exists but is damaged.
std::optional<TrainState> load_checkpoint(const std::filesystem::path& run_dir,
                                          models::Classifier& model,
                                          torch::optim::Optimizer& optimizer,
                                          torch::nn::Module* objective = nullptr);

}  // namespace finch::train
