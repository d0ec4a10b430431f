#pragma once
// Freezing backbone stages for fine-tuning (`train.freeze: none | backbone | N`): frozen
// parameters get no gradients and no optimizer state, and frozen BatchNorm layers stay in
// eval mode so they keep the pretrained running statistics.
#include <string>
#include <vector>

#include "finch/models/model.h"

namespace finch::train {

struct FreezePlan {
  bool whole_backbone = false;
  std::vector<std::string> prefixes;  // classifier-level module name prefixes ("backbone.layer1")
  std::string description;            // "nothing", "the backbone", "backbone stages 1-2 (...)"
  bool any() const { return whole_backbone || !prefixes.empty(); }
};

/// Parses train.freeze for this model's backbone; throws finch::Error for a bad value or more
/// stages than the backbone has.
FreezePlan plan_freeze(const std::string& value, const models::BackboneImpl& backbone);

/// Turns off requires_grad of the frozen parameters (before the optimizer is built).
void freeze_parameters(models::Classifier& model, const FreezePlan& plan);

/// Puts the frozen modules in eval mode; call after every model->train().
void keep_frozen_in_eval(models::Classifier& model, const FreezePlan& plan);

}  // namespace finch::train
