#include "finch/train/freeze.h"

#include <fmt/format.h>

#include "finch/core/error.h"

namespace finch::train {

namespace {

bool frozen(const std::string& name, const FreezePlan& plan) {
  if (plan.whole_backbone) return name == "backbone" || name.rfind("backbone.", 0) == 0;
  for (const auto& prefix : plan.prefixes) {
    if (name == prefix || name.rfind(prefix + ".", 0) == 0) return true;
  }
  return false;
}

}  // namespace

FreezePlan plan_freeze(const std::string& value, const models::BackboneImpl& backbone) {
  FreezePlan plan;
  if (value == "none" || value == "0" || value.empty()) {
    plan.description = "nothing";
    return plan;
  }
  if (value == "backbone") {
    plan.whole_backbone = true;
    plan.description = "the whole backbone";
    return plan;
  }
  const auto stages = backbone.stage_prefixes();
  int64_t n = 0;
  try {
    size_t used = 0;
    n = std::stoll(value, &used);
    if (used != value.size()) throw std::invalid_argument(value);
  } catch (const std::exception&) {
    throw Error("train.freeze must be none, backbone or a number of stages, got '" + value + "'");
  }
  if (n < 0 || n > static_cast<int64_t>(stages.size()))
    throw Error(
        fmt::format("train.freeze: {} stages asked, the backbone has {} (use backbone to "
                    "freeze all of it)",
                    n, stages.size()));
  std::vector<std::string> names;
  for (int64_t s = 0; s < n; ++s) {
    for (const auto& prefix : stages[s]) {
      plan.prefixes.push_back("backbone." + prefix);
      names.push_back(prefix);
    }
  }
  plan.description = fmt::format("backbone stages 1-{} ({})", n, fmt::join(names, ", "));
  return plan;
}

void freeze_parameters(models::Classifier& model, const FreezePlan& plan) {
  if (!plan.any()) return;
  for (auto& item : model->named_parameters(/*recurse=*/true)) {
    if (frozen(item.key(), plan)) item.value().set_requires_grad(false);
  }
}

void keep_frozen_in_eval(models::Classifier& model, const FreezePlan& plan) {
  if (!plan.any()) return;
  for (auto& item : model->named_modules("", /*include_self=*/false)) {
    if (frozen(item.key(), plan)) item.value()->eval();
  }
}

}  // namespace finch::train
