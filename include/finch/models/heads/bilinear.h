#pragma once
// What the bilinear head's classifier multiplies its unit vector by (heads/bilinear.cpp), for
// writers of other runtimes' graphs (ONNX export).
#include <cstdint>

#include "finch/models/model.h"

namespace finch::models {

/// `model.bilinear.logit_scale` resolved: auto -> sqrt(channels); absent (a model file from
/// before the option) -> 1. `bilinear_options` is the spec's `bilinear` section.
double bilinear_logit_scale(const ModelSpec& bilinear_options, int64_t channels);

}  // namespace finch::models
