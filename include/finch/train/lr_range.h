#pragma once
// The learning-rate range test (Smith, "Cyclical Learning Rates for Training Neural Networks",
// WACV 2017; fastai's lr_find): train from the recipe's initial weights while the learning
// rate grows exponentially from min_lr to max_lr, record the loss, stop once it explodes, and
// suggest the rate where the smoothed loss falls fastest. `finch tune lr` writes the curve as
// PNG and JSON.
#include <filesystem>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <string>
#include <vector>

#include "finch/core/config.h"
#include "finch/core/progress.h"

namespace finch::train {

struct LrRangeOptions {
  double min_lr = 1e-6;
  double max_lr = 10.0;
  int64_t steps = 200;
  double stop_factor = 4.0;  // stop once the smoothed loss exceeds this x its minimum
  double smoothing = 0.95;   // exponential moving average of the loss (bias-corrected)
  ProgressStyle progress = ProgressStyle::kAuto;
};

struct LrRangePoint {
  double lr = 0, loss = 0, smoothed = 0;
};

struct LrRangeResult {
  std::vector<LrRangePoint> points;
  double suggested_lr = 0;  // steepest descent of the smoothed loss (per log lr)
  double min_loss_lr = 0;   // where the smoothed loss is lowest
  std::string stopped;      // why the test ended ("loss exploded at ..." or "reached max_lr")
};

/// Runs the test with `config`'s data, model, optimizer and batch size (the schedule is
/// replaced by the exponential ramp) in `run_dir` (which receives the config.yaml).
LrRangeResult lr_range_test(const Config& config, const std::filesystem::path& run_dir,
                            const LrRangeOptions& options);

/// From recorded points alone: the smoothed curve's steepest descent and its minimum. Points
/// of the first tenth (the EMA still warming up) are not candidates.
void suggest_learning_rate(LrRangeResult& result);

nlohmann::json to_json(const LrRangeResult& result, const LrRangeOptions& options);
/// Loss (raw and smoothed) against the learning rate on a log axis, the suggestion marked.
cv::Mat lr_range_chart(const LrRangeResult& result, int width = 720, int height = 480);

}  // namespace finch::train
