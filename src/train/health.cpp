#include "finch/train/health.h"

#include <fmt/format.h>

#include <cmath>

namespace finch::train {

namespace {

const char* kRemedies =
    "try a lower optim.lr (`finch tune lr --config RECIPE` suggests one), optim.clip_grad_norm: "
    "1, or a warmup (schedule.warmup_epochs: 1)";

}  // namespace

std::optional<std::string> diagnose_epoch(const EpochFigures& f) {
  const double uniform_loss = std::log(static_cast<double>(std::max<int64_t>(2, f.classes)));
  if (!std::isfinite(f.train_loss) || f.train_loss > 3 * uniform_loss)
    return fmt::format(
        "epoch {}: training loss {:.4g} is more than 3x that of guessing uniformly among {} "
        "classes ({:.3f}): the run is diverging; {}",
        f.epoch, f.train_loss, f.classes, uniform_loss, kRemedies);
  const double chance = 1.0 / static_cast<double>(std::max<int64_t>(1, f.classes));
  if (f.classes >= 3 && f.accuracy <= 1.5 * chance)
    return fmt::format(
        "epoch {}: {} top-1 {:.4f} is at chance ({:.4f} for {} classes): the model is not "
        "learning; {}",
        f.epoch, f.validation ? "validation" : "training", f.accuracy, chance, f.classes,
        kRemedies);
  return std::nullopt;
}

}  // namespace finch::train
