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
  double train_loss = 0;   // the epoch's mean training loss (all loss terms)
  double accuracy = 0;     // validation top-1, or training top-1 without validation data
  bool validation = true;  // whether `accuracy` is the validation figure
};

/// A warning for the log and metrics.jsonl, or nothing when the epoch looks healthy.
/// Diverging: train loss above 3 ln(classes) (uniform guessing scores ln(classes)).
/// At chance: from the first epoch on, accuracy at most 1.5 / classes (with >= 3 classes).
std::optional<std::string> diagnose_epoch(const EpochFigures& figures);

}  // namespace finch::train
