#pragma once
// Notices a run that is going nowhere, after each epoch, so that a useless run does not finish
// quietly: a training loss far above that of guessing uniformly (diverging) or accuracy at
// chance. The message says what to try.
#include <cstdint>
#include <optional>
#include <string>

namespace finch::train {

struct EpochFigures {
  int64_t epoch = 1;  // 1-based
  int64_t classes = 2;
  double train_loss = 0;      // the epoch's mean training loss (all loss terms)
  double train_accuracy = 0;  // the epoch's training top-1
  double initial_loss = 0;    // the run's first-step loss (0 = unknown)
  double val_accuracy = -1;   // validation top-1 (-1: no validation data)
  bool last_epoch = false;
};

/// A warning for the log and metrics.jsonl, or nothing when the epoch looks healthy.
/// Diverging: train loss above 10x max(ln(classes), the first step's loss). Uniform guessing
/// scores ln(classes) in cross-entropy; the first step's loss is the scale of objectives with
/// more terms. 10x, because WS-DAN's centre term can triple its loss in a healthy first epoch;
/// real divergence gives hundreds of times the reference, or NaN.
/// At chance: from the first epoch on, training top-1 at most 1.5 / classes (with >= 3
/// classes). Training, not validation, accuracy: at the peak of a one-cycle schedule the
/// BatchNorm running statistics can put validation at chance for an epoch while the model
/// learns, and recover.
/// Not generalising: validation top-1 at chance while training top-1 is at least 3 / classes,
/// from the second epoch on or in the last one (BatchNorm running statistics that lag the
/// weights, e.g. MobileNetV3 / EfficientNet's momentum 0.01 in a short run from scratch).
std::optional<std::string> diagnose_epoch(const EpochFigures& figures);

}  // namespace finch::train
