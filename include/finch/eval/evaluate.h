#pragma once
// Runs a model over every batch of a loader (eval mode, no gradients) and accumulates metrics.
#include <torch/types.h>

#include <string>

#include "finch/core/progress.h"
#include "finch/data/loader.h"
#include "finch/eval/metrics.h"
#include "finch/models/model.h"

namespace finch::eval {

/// Evaluates `model` on one pass of `loader` (started here as epoch 0).
Metrics evaluate(models::Classifier& model, data::Loader& loader, const torch::Device& device,
                 ProgressStyle progress, const std::string& label = "eval");

}  // namespace finch::eval
