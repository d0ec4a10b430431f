#include "finch/train/health.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace finch::train {

namespace {

const char* kRemedies =
    "try a lower optim.lr (`finch tune lr --config RECIPE` suggests one), optim.clip_grad_norm: "
    "1, or a warmup (schedule.warmup_epochs: 1)";

}  // namespace

std::optional<std::string> diagnose_epoch(const EpochFigures& f) {
  const double uniform_loss = std::log(static_cast<double>(std::max<int64_t>(2, f.classes)));
  const double reference =
      std::max(uniform_loss, std::isfinite(f.initial_loss) ? f.initial_loss : 0);
  if (!std::isfinite(f.train_loss) || f.train_loss > 10 * reference)
    return fmt::format(
        "epoch {}: training loss {:.4g} is more than 10x {:.3f} (the larger of the first step's "
        "loss and ln {} = guessing uniformly): the run is diverging; {}",
        f.epoch, f.train_loss, reference, f.classes, kRemedies);
  const double chance = 1.0 / static_cast<double>(std::max<int64_t>(1, f.classes));
  if (f.classes >= 3 && f.train_accuracy <= 1.5 * chance)
    return fmt::format(
        "epoch {}: training top-1 {:.4f} is at chance ({:.4f} for {} classes): the model is not "
        "learning; {}",
        f.epoch, f.train_accuracy, chance, f.classes, kRemedies);
  if (f.classes >= 3 && f.val_accuracy >= 0 && f.val_accuracy <= 1.5 * chance &&
      f.train_accuracy >= 3 * chance && (f.epoch >= 2 || f.last_epoch))
    return fmt::format(
        "epoch {}: validation top-1 {:.4f} is at chance while training top-1 is {:.4f}: the "
        "model does not carry over to evaluation mode. With BatchNorm and a slow momentum "
        "(MobileNetV3 and EfficientNet use 0.01) the running statistics lag weights that move "
        "fast (a short run from scratch): train longer, start from pretrained weights, or check "
        "that the eval transforms match the training images",
        f.epoch, f.val_accuracy, f.train_accuracy);
  return std::nullopt;
}

}  // namespace finch::train
