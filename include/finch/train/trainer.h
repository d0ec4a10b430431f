#pragma once
// The training loop: data -> model -> loss -> optimizer, with validation-based model
// selection, atomic artifacts, exact resume, checkpoint on Ctrl-C and a stop on NaN loss.
//
// RUN_DIR layout:
//   config.yaml         the effective configuration (defaults + recipe + --set)
//   metrics.jsonl       one record per epoch (epoch, train_loss, train_acc, val_loss,
//                       val_acc, lr, img_per_s, seconds, skipped; under torchrun also
//                       world_size, allreduce_ms_per_step, allreduce_mb_per_step; and
//                       `warning` when the epoch looks diverged or at chance, train/health.h)
//   best.safetensors    the model with the best validation top-1 (self-describing)
//   last.safetensors    the model after the last finished epoch
//   checkpoint/         resume state (model, optimizer, state.json)
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "finch/core/config.h"
#include "finch/eval/metrics.h"
#include "finch/train/checkpoint.h"

namespace finch::train {

struct TrainSummary {
  int64_t epochs_completed = 0;
  bool interrupted = false;
  double best_val_acc = -1;
  int64_t best_epoch = -1;
  std::filesystem::path best_model, last_model;
};

/// Callbacks for applications embedding the trainer (and for tests).
struct TrainHooks {
  /// Called after every optimizer step, before the interrupt check.
  std::function<void(const TrainState& state, models::Classifier& model)> on_step;
  /// Called after backward, before the gradients are averaged across ranks and applied
  /// (gradient clipping, logging gradient norms).
  std::function<void(models::Classifier& model)> after_backward;
};

/// The training loop as an object a program can step (PyTorch Lightning's hooks, dlib's
/// train_one_step): the constructor sets everything up (data, model, optimizer, checkpoint,
/// ranks), run() trains the remaining epochs, and train_epoch / train_step / validate /
/// save_checkpoint are the pieces run() is made of. Under torchrun (WORLD_SIZE > 1 in the
/// environment) it trains data-parallel with the other ranks (train/distributed.h): each rank
/// reads its shard of every epoch, gradients are averaged, rank 0 alone writes into `run_dir`
/// (which every rank must be able to read for a resume), and after a torchrun restart
/// (TORCHELASTIC_RESTART_COUNT > 0) a run with a checkpoint resumes by itself.
class Trainer {
 public:
  /// With `resume`, continues from the run's checkpoint (config must be the run's own
  /// config.yaml, possibly with --set changes).
  Trainer(const Config& config, const std::filesystem::path& run_dir, bool resume,
          TrainHooks hooks = {});
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  /// Trains until train.epochs are done or an interrupt (Ctrl-C) checkpointed the run.
  TrainSummary run();
  /// One epoch from where the state stands: steps, validation, model files, metrics record,
  /// checkpoint. False when interrupted (a checkpoint was written).
  bool train_epoch();
  /// One optimizer step on a batch ([B, 3, H, W] images, or [B, D] cached embeddings, and [B]
  /// labels). Collective under torchrun. Returns whether a rank asked to stop (interrupt).
  bool train_step(torch::Tensor inputs, torch::Tensor labels);
  /// Fixes the learning rate of the following train_step calls at `lr` (times each parameter
  /// group's multiplier) instead of the schedule's; 0 hands control back to the schedule.
  /// The learning-rate range test (train/lr_range.h) drives it.
  void set_fixed_lr(double lr);
  /// The next training batch (inputs, labels), starting the loader's next epoch when one runs
  /// out: for programs that call train_step themselves.
  std::pair<torch::Tensor, torch::Tensor> next_training_batch();
  /// Metrics of the model on the validation data (every rank's shard merged).
  eval::Metrics validate();
  /// Writes the resume checkpoint (rank 0; collective under torchrun).
  void save_checkpoint();

  /// Whether this process writes the run's files (rank 0, or the only process).
  bool is_writer() const;
  const TrainState& state() const;
  models::Classifier& model();
  int64_t steps_per_epoch() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Trains according to `config` into `run_dir`: Trainer(config, run_dir, resume, hooks).run().
TrainSummary run_training(const Config& config, const std::filesystem::path& run_dir, bool resume,
                          const TrainHooks& hooks = {});

}  // namespace finch::train
