#pragma once
// Optimizers (SGD with momentum/Nesterov, Adam, AdamW, RMSprop) over parameter groups that
// separate backbone from head (head_lr_mult, the classic fine-tuning recipe) and weights
// from norm parameters and biases (which get no weight decay unless asked).
#include <torch/optim/optimizer.h>

#include <functional>
#include <memory>
#include <vector>

#include "finch/core/config.h"
#include "finch/models/model.h"

namespace finch::train {

struct OptimizerBundle {
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  std::vector<double> base_lrs;  // per parameter group: optim.lr x its multiplier
};

/// A set of parameters sharing an lr multiplier and whether weight decay applies.
struct ParamSet {
  std::vector<torch::Tensor> params;
  double lr_mult = 1.0;
  bool decay = true;
};

/// The optimizer named by optim.name over these sets (empty sets are dropped).
OptimizerBundle make_optimizer(const Config& config, const std::vector<ParamSet>& sets);

/// make_optimizer over {backbone, head} x {weights, norms and biases} of a classifier.
OptimizerBundle build_optimizer(const Config& config, models::Classifier& model);

/// Sets every group's lr to base_lr x factor.
void set_lr_factor(OptimizerBundle& bundle, double factor);

/// The lr of the first group (what metrics report).
double current_lr(const OptimizerBundle& bundle);

/// Learning-rate factor (multiplying optim.lr) as a function of the optimizer step.
class LrSchedule {
 public:
  /// Reads schedule.* from the config; total_steps = epochs x steps per epoch.
  LrSchedule(const Config& config, int64_t steps_per_epoch, int64_t total_steps);
  /// Factor for 0-based step `step` (the step about to be taken).
  double factor(int64_t step) const;

 private:
  double warmup_steps_ = 0, warmup_start_ = 1;
  bool warmup_ = true;                   // onecycle makes its own rise
  std::function<double(double)> curve_;  // the registered schedule's factor after warmup
};

}  // namespace finch::train
