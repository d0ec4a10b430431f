#include "finch/train/optim.h"

#include <torch/optim.h>

#include <cmath>
#include <tuple>

#include "finch/core/error.h"
#include "finch/core/registry.h"

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

namespace {

// An optimizer kind: each parameter group's options, and the optimizer over the groups.
struct OptimizerKind {
  std::function<std::unique_ptr<torch::optim::OptimizerOptions>(const Config&, double lr,
                                                                double weight_decay)>
      group_options;
  std::function<std::unique_ptr<torch::optim::Optimizer>(
      std::vector<torch::optim::OptimizerParamGroup>, double lr)>
      make;
};

template <typename Optimizer, typename Options>
std::unique_ptr<torch::optim::Optimizer> make_with(
    std::vector<torch::optim::OptimizerParamGroup> groups, double lr) {
  // The defaults only apply to groups added later; every group has its own options.
  return std::make_unique<Optimizer>(std::move(groups), Options(lr));
}

// Adam and AdamW take the same options (they differ in how weight decay is applied).
template <typename Optimizer, typename Options>
OptimizerKind adam_kind() {
  return {
      [](const Config& c, double lr, double wd) -> std::unique_ptr<torch::optim::OptimizerOptions> {
        auto betas = c.get<std::vector<double>>("optim.betas");
        if (betas.size() != 2) throw Error("optim.betas needs two values");
        return std::make_unique<Options>(Options(lr)
                                             .betas({betas[0], betas[1]})
                                             .eps(c.get<double>("optim.eps"))
                                             .weight_decay(wd));
      },
      make_with<Optimizer, Options>};
}

Registry<OptimizerKind>& optimizers() {
  static Registry<OptimizerKind> registry("optimizers", "optimizer", "optim.name");
  static const bool filled = [] {
    auto& r = registry;
    const std::string momentum = "momentum: 0.9   # sgd, rmsprop";
    const std::string eps = "eps: 1.0e-8      # adam, adamw, rmsprop";
    const std::string betas = "betas: [0.9, 0.999]   # adam, adamw";
    r.add({"sgd",
           "torch.optim.SGD: momentum, nesterov (when momentum > 0), weight decay",
           {[](const Config& c, double lr, double wd) {
              const double m = c.get<double>("optim.momentum");
              return std::make_unique<torch::optim::SGDOptions>(
                  torch::optim::SGDOptions(lr)
                      .momentum(m)
                      .nesterov(c.get<bool>("optim.nesterov") && m > 0)
                      .weight_decay(wd));
            },
            make_with<torch::optim::SGD, torch::optim::SGDOptions>},
           {{"optim", momentum + "\nnesterov: true   # sgd"}}});
    r.add({"adam",
           "torch.optim.Adam: betas, eps; L2 weight decay added to the gradient",
           adam_kind<torch::optim::Adam, torch::optim::AdamOptions>(),
           {{"optim", betas + "\n" + eps}}});
    r.add({"adamw",
           "torch.optim.AdamW: Adam with decoupled weight decay (Loshchilov & Hutter)",
           adam_kind<torch::optim::AdamW, torch::optim::AdamWOptions>(),
           {{"optim", betas + "\n" + eps}}});
    r.add({"rmsprop",
           "torch.optim.RMSprop: alpha, eps, momentum",
           {[](const Config& c, double lr, double wd) {
              return std::make_unique<torch::optim::RMSpropOptions>(
                  torch::optim::RMSpropOptions(lr)
                      .alpha(c.get<double>("optim.alpha"))
                      .eps(c.get<double>("optim.eps"))
                      .momentum(c.get<double>("optim.momentum"))
                      .weight_decay(wd));
            },
            make_with<torch::optim::RMSprop, torch::optim::RMSpropOptions>},
           {{"optim", momentum + "\n" + eps + "\nalpha: 0.99      # rmsprop smoothing"}}});
    return true;
  }();
  (void)filled;
  return registry;
}
// Built at load time, so `finch list`, `--help` and the config schema see every entry.
[[maybe_unused]] const bool kOptimizersRegistered = (optimizers(), true);

}  // namespace

OptimizerBundle make_optimizer(const Config& config, const std::vector<ParamSet>& sets) {
  const OptimizerKind& kind = optimizers().factory(config.get<std::string>("optim.name"));
  const double lr = config.get<double>("optim.lr");
  const double wd = config.get<double>("optim.weight_decay");
  if (lr <= 0) throw Error("optim.lr must be > 0");
  OptimizerBundle bundle;
  std::vector<torch::optim::OptimizerParamGroup> groups;
  for (const auto& set : sets) {
    if (set.params.empty()) continue;
    const double group_lr = lr * set.lr_mult;
    groups.emplace_back(set.params, kind.group_options(config, group_lr, set.decay ? wd : 0.0));
    bundle.base_lrs.push_back(group_lr);
  }
  if (groups.empty()) throw Error("the model has no trainable parameters");
  bundle.optimizer = kind.make(std::move(groups), lr);
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

namespace {

struct ScheduleSteps {
  double warmup_steps;
  double steps_per_epoch, total_steps;
};

// A schedule kind: reads its keys and returns the lr factor of a (0-based) step.
struct ScheduleKind {
  bool uses_warmup = true;  // false: the schedule makes its own rise (onecycle)
  std::function<std::function<double(double)>(const Config&, const ScheduleSteps&)> make;
};

Registry<ScheduleKind>& schedules() {
  static Registry<ScheduleKind> registry("schedules", "schedule", "schedule.name");
  static const bool filled = [] {
    auto& r = registry;
    const std::string gamma = "gamma: 0.1   # step, multistep: decay factor";
    r.add({"constant",
           "the peak learning rate throughout (after any warmup)",
           {true, [](const Config&, const ScheduleSteps&) { return [](double) { return 1.0; }; }}});
    r.add({"step",
           "torch StepLR: lr x gamma every step_size epochs",
           {true,
            [](const Config& c, const ScheduleSteps& s) {
              const auto size = c.get<int64_t>("schedule.step_size");
              if (size < 1) throw Error("schedule.step_size must be >= 1");
              const double g = c.get<double>("schedule.gamma");
              return std::function<double(double)>([=](double step) {
                return std::pow(g, std::floor(step / s.steps_per_epoch / size));
              });
            }},
           {{"schedule", "step_size: 30   # step: epochs between decays\n" + gamma}}});
    r.add({"multistep",
           "torch MultiStepLR: lr x gamma at each milestone epoch",
           {true,
            [](const Config& c, const ScheduleSteps& s) {
              const auto milestones = c.get<std::vector<double>>("schedule.milestones");
              const double g = c.get<double>("schedule.gamma");
              return std::function<double(double)>([=](double step) {
                int passed = 0;
                for (double m : milestones) passed += step / s.steps_per_epoch >= m ? 1 : 0;
                return std::pow(g, passed);
              });
            }},
           {{"schedule",
             "milestones: [30, 60]   # multistep: epochs at which lr *= gamma\n" + gamma}}});
    r.add({"cosine",
           "cosine annealing from the peak to min_lr over the steps after warmup",
           {true,
            [](const Config& c, const ScheduleSteps& s) {
              const double min = c.get<double>("schedule.min_lr") / c.get<double>("optim.lr");
              return std::function<double(double)>([=](double step) {
                const double t =
                    (step - s.warmup_steps) / std::max(1.0, s.total_steps - s.warmup_steps);
                return min + (1.0 - min) * 0.5 * (1.0 + std::cos(kPi * std::clamp(t, 0.0, 1.0)));
              });
            }},
           {{"schedule", "min_lr: 0.0   # cosine: final lr"}}});
    r.add(
        {"onecycle",
         "torch OneCycleLR with cosine annealing (momentum not cycled): lr/div_factor up to "
         "lr over pct_start of the steps, then down to lr/div_factor/final_div_factor",
         {false,
          [](const Config& c, const ScheduleSteps& s) {
            const double pct = c.get<double>("schedule.pct_start");
            if (pct <= 0 || pct >= 1) throw Error("schedule.pct_start must be in (0, 1)");
            const double initial = 1.0 / c.get<double>("schedule.div_factor");
            const double final_factor = initial / c.get<double>("schedule.final_div_factor");
            const double peak_step = pct * s.total_steps - 1, last_step = s.total_steps - 1;
            return std::function<double(double)>([=](double step) {
              auto anneal = [](double from, double to, double t) {
                return to + (from - to) / 2.0 * (std::cos(kPi * std::clamp(t, 0.0, 1.0)) + 1.0);
              };
              if (step <= peak_step) return anneal(initial, 1.0, step / std::max(peak_step, 1.0));
              return anneal(1.0, final_factor,
                            (step - peak_step) / std::max(last_step - peak_step, 1.0));
            });
          }},
         {{"schedule", R"(pct_start: 0.25            # onecycle: share of steps spent increasing lr
div_factor: 25.0           # onecycle: initial lr = lr / div_factor
final_div_factor: 10000.0  # onecycle: final lr = initial lr / final_div_factor)"}}});
    return true;
  }();
  (void)filled;
  return registry;
}
// Built at load time, so `finch list`, `--help` and the config schema see every entry.
[[maybe_unused]] const bool kSchedulesRegistered = (schedules(), true);

}  // namespace

LrSchedule::LrSchedule(const Config& config, int64_t steps_per_epoch, int64_t total_steps)
    : warmup_steps_(config.get<double>("schedule.warmup_epochs") * steps_per_epoch),
      warmup_start_(config.get<double>("schedule.warmup_start_factor")) {
  const ScheduleKind& kind = schedules().factory(config.get<std::string>("schedule.name"));
  warmup_ = kind.uses_warmup;
  curve_ =
      kind.make(config, {warmup_steps_, static_cast<double>(std::max<int64_t>(1, steps_per_epoch)),
                         static_cast<double>(std::max<int64_t>(1, total_steps))});
}

double LrSchedule::factor(int64_t step) const {
  const double s = static_cast<double>(step);
  if (warmup_ && s < warmup_steps_)
    return warmup_start_ + (1.0 - warmup_start_) * s / warmup_steps_;
  return curve_(s);
}

}  // namespace finch::train
