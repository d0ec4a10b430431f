#include "finch/train/optim.h"

#include <torch/optim.h>

#include <cmath>
#include <tuple>

#include "finch/core/error.h"

namespace finch::train {

namespace {

constexpr double kPi = 3.14159265358979323846;

// A parameter is "norm or bias" when it is 1-D: biases and BatchNorm/LayerNorm weights.
bool is_norm_or_bias(const torch::Tensor& p) { return p.dim() <= 1; }

}  // namespace

OptimizerBundle build_optimizer(const Config& config, models::Classifier& model) {
  const double head_mult = config.get<double>("optim.head_lr_mult");
  const bool decay_all = config.get<bool>("optim.decay_norm_and_bias");
  std::vector<ParamSet> sets{
      {{}, 1.0, true}, {{}, 1.0, decay_all}, {{}, head_mult, true}, {{}, head_mult, decay_all}};
  auto assign = [&](torch::nn::Module& module, size_t first) {
    for (auto& p : module.parameters()) {
      if (p.requires_grad()) sets[first + (is_norm_or_bias(p) ? 1 : 0)].params.push_back(p);
    }
  };
  assign(*model->backbone(), 0);
  assign(*model->head(), 2);
  return make_optimizer(config, sets);
}

OptimizerBundle make_optimizer(const Config& config, const std::vector<ParamSet>& sets) {
  const std::string name = config.get<std::string>("optim.name");
  const double lr = config.get<double>("optim.lr");
  const double wd = config.get<double>("optim.weight_decay");
  if (lr <= 0) throw Error("optim.lr must be > 0");
  struct GroupSpec {
    std::vector<torch::Tensor> params;
    double lr, weight_decay;
  };
  std::vector<GroupSpec> specs;
  for (const auto& set : sets)
    specs.push_back({set.params, lr * set.lr_mult, set.decay ? wd : 0.0});

  OptimizerBundle bundle;
  std::vector<torch::optim::OptimizerParamGroup> groups;
  for (auto& spec : specs) {
    if (spec.params.empty()) continue;
    std::unique_ptr<torch::optim::OptimizerOptions> options;
    if (name == "sgd") {
      const double momentum = config.get<double>("optim.momentum");
      const bool nesterov = config.get<bool>("optim.nesterov") && momentum > 0;
      options = std::make_unique<torch::optim::SGDOptions>(
          torch::optim::SGDOptions(spec.lr).momentum(momentum).nesterov(nesterov).weight_decay(
              spec.weight_decay));
    } else if (name == "adam" || name == "adamw") {
      auto betas = config.get<std::vector<double>>("optim.betas");
      if (betas.size() != 2) throw Error("optim.betas needs two values");
      const double eps = config.get<double>("optim.eps");
      if (name == "adam") {
        options = std::make_unique<torch::optim::AdamOptions>(torch::optim::AdamOptions(spec.lr)
                                                                  .betas({betas[0], betas[1]})
                                                                  .eps(eps)
                                                                  .weight_decay(spec.weight_decay));
      } else {
        options =
            std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(spec.lr)
                                                             .betas({betas[0], betas[1]})
                                                             .eps(eps)
                                                             .weight_decay(spec.weight_decay));
      }
    } else if (name == "rmsprop") {
      options = std::make_unique<torch::optim::RMSpropOptions>(
          torch::optim::RMSpropOptions(spec.lr)
              .alpha(config.get<double>("optim.alpha"))
              .eps(config.get<double>("optim.eps"))
              .momentum(config.get<double>("optim.momentum"))
              .weight_decay(spec.weight_decay));
    } else {
      throw Error("unknown optim.name '" + name + "' (known: sgd, adam, adamw, rmsprop)");
    }
    groups.emplace_back(spec.params, std::move(options));
    bundle.base_lrs.push_back(spec.lr);
  }
  if (groups.empty()) throw Error("the model has no trainable parameters");

  // Defaults are only used for groups added later; every group above has its own options.
  if (name == "sgd") {
    bundle.optimizer = std::make_unique<torch::optim::SGD>(groups, torch::optim::SGDOptions(lr));
  } else if (name == "adam") {
    bundle.optimizer = std::make_unique<torch::optim::Adam>(groups, torch::optim::AdamOptions(lr));
  } else if (name == "adamw") {
    bundle.optimizer =
        std::make_unique<torch::optim::AdamW>(groups, torch::optim::AdamWOptions(lr));
  } else {
    bundle.optimizer =
        std::make_unique<torch::optim::RMSprop>(groups, torch::optim::RMSpropOptions(lr));
  }
  return bundle;
}

void set_lr_factor(OptimizerBundle& bundle, double factor) {
  auto& groups = bundle.optimizer->param_groups();
  for (size_t i = 0; i < groups.size(); ++i)
    groups[i].options().set_lr(bundle.base_lrs[i] * factor);
}

double current_lr(const OptimizerBundle& bundle) {
  return bundle.optimizer->param_groups().front().options().get_lr();
}

LrSchedule::LrSchedule(const Config& config, int64_t steps_per_epoch, int64_t total_steps)
    : name_(config.get<std::string>("schedule.name")),
      warmup_steps_(config.get<double>("schedule.warmup_epochs") * steps_per_epoch),
      warmup_start_(config.get<double>("schedule.warmup_start_factor")),
      gamma_(config.get<double>("schedule.gamma")),
      min_factor_(config.get<double>("schedule.min_lr") / config.get<double>("optim.lr")),
      pct_start_(config.get<double>("schedule.pct_start")),
      div_(config.get<double>("schedule.div_factor")),
      final_div_(config.get<double>("schedule.final_div_factor")),
      step_size_(config.get<int64_t>("schedule.step_size")),
      steps_per_epoch_(std::max<int64_t>(1, steps_per_epoch)),
      total_steps_(std::max<int64_t>(1, total_steps)),
      milestones_(config.get<std::vector<double>>("schedule.milestones")) {
  static const std::vector<std::string> known{"constant", "step", "multistep", "cosine",
                                              "onecycle"};
  if (std::find(known.begin(), known.end(), name_) == known.end()) {
    throw Error("unknown schedule.name '" + name_ +
                "' (known: constant, step, multistep, cosine, onecycle)");
  }
  if (name_ == "step" && step_size_ < 1) throw Error("schedule.step_size must be >= 1");
  if (name_ == "onecycle" && (pct_start_ <= 0 || pct_start_ >= 1)) {
    throw Error("schedule.pct_start must be in (0, 1)");
  }
}

double LrSchedule::factor(int64_t step) const {
  const double s = static_cast<double>(step);
  if (name_ == "onecycle") {
    // torch.optim.lr_scheduler.OneCycleLR with cosine annealing (momentum is not cycled).
    const double initial = 1.0 / div_, final_factor = initial / final_div_;
    const double peak_step = pct_start_ * total_steps_ - 1, last_step = total_steps_ - 1;
    auto cos_anneal = [](double from, double to, double t) {
      return to + (from - to) / 2.0 * (std::cos(kPi * std::clamp(t, 0.0, 1.0)) + 1.0);
    };
    if (s <= peak_step) return cos_anneal(initial, 1.0, s / std::max(peak_step, 1.0));
    return cos_anneal(1.0, final_factor, (s - peak_step) / std::max(last_step - peak_step, 1.0));
  }
  if (s < warmup_steps_) return warmup_start_ + (1.0 - warmup_start_) * s / warmup_steps_;
  const double epoch = s / steps_per_epoch_;
  if (name_ == "step") return std::pow(gamma_, std::floor(epoch / step_size_));
  if (name_ == "multistep") {
    int passed = 0;
    for (double m : milestones_) passed += epoch >= m ? 1 : 0;
    return std::pow(gamma_, passed);
  }
  if (name_ == "cosine") {
    const double t = (s - warmup_steps_) / std::max(1.0, total_steps_ - warmup_steps_);
    return min_factor_ +
           (1.0 - min_factor_) * 0.5 * (1.0 + std::cos(kPi * std::clamp(t, 0.0, 1.0)));
  }
  return 1.0;  // constant
}

}  // namespace finch::train
