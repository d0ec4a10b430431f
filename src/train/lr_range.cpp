#include "finch/train/lr_range.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <opencv2/imgproc.hpp>

#include "finch/core/error.h"
#include "finch/train/trainer.h"

namespace finch::train {

LrRangeResult lr_range_test(const Config& config, const std::filesystem::path& run_dir,
                            const LrRangeOptions& options) {
  if (!(options.min_lr > 0) || !(options.max_lr > options.min_lr))
    throw Error("the learning-rate range needs 0 < min_lr < max_lr");
  if (options.steps < 10) throw Error("the learning-rate range test needs at least 10 steps");
  if (!(options.stop_factor > 1)) throw Error("stop_factor must be > 1");
  Config test_config = config;
  test_config.set("train.progress", "none");
  Trainer trainer(test_config, run_dir, /*resume=*/false);
  LrRangeResult result;
  Progress progress("lr range test", options.steps, options.progress);
  double average = 0, best = std::numeric_limits<double>::infinity();
  const double growth = std::log(options.max_lr / options.min_lr) / (options.steps - 1);
  result.stopped = fmt::format("reached max_lr {:g}", options.max_lr);
  for (int64_t step = 0; step < options.steps; ++step) {
    const double lr = options.min_lr * std::exp(growth * static_cast<double>(step));
    trainer.set_fixed_lr(lr);
    auto [inputs, labels] = trainer.next_training_batch();
    const TrainState before = trainer.state();
    double loss = std::numeric_limits<double>::infinity();
    try {
      trainer.train_step(inputs, labels);
      const TrainState& after = trainer.state();
      loss = (after.loss_sum - before.loss_sum) / std::max<int64_t>(1, after.seen - before.seen);
    } catch (const Error&) {
      // A non-finite loss ends the test: that is the explosion it looks for.
    }
    if (!std::isfinite(loss)) {
      result.stopped = fmt::format("loss became {} at lr {:.3g}", loss, lr);
      break;
    }
    average = options.smoothing * average + (1 - options.smoothing) * loss;
    const double smoothed = average / (1 - std::pow(options.smoothing, step + 1));
    result.points.push_back({lr, loss, smoothed});
    best = std::min(best, smoothed);
    progress.update(step + 1, fmt::format("lr {:.3g} loss {:.4f}", lr, smoothed));
    if (step > options.steps / 10 && smoothed > options.stop_factor * best) {
      result.stopped =
          fmt::format("loss exploded at lr {:.3g} ({:.3g} x its minimum)", lr, options.stop_factor);
      break;
    }
  }
  progress.finish(result.stopped);
  suggest_learning_rate(result);
  return result;
}

void suggest_learning_rate(LrRangeResult& result) {
  const auto& p = result.points;
  if (p.size() < 5)
    throw Error(fmt::format(
        "the learning-rate range test stopped after {} steps ({}): start from a lower min_lr",
        p.size(), result.stopped));
  const size_t lowest = static_cast<size_t>(
      std::min_element(p.begin(), p.end(),
                       [](const auto& a, const auto& b) { return a.smoothed < b.smoothed; }) -
      p.begin());
  result.min_loss_lr = p[lowest].lr;
  // Steepest descent: the most negative slope d(smoothed)/d(log lr), central differences,
  // among points before the minimum.
  const size_t first = std::max<size_t>(1, p.size() / 10);
  double steepest = std::numeric_limits<double>::infinity();
  result.suggested_lr = p[lowest].lr / 10;  // fallback when the minimum comes first
  for (size_t i = first; i + 1 < p.size() && i <= lowest; ++i) {
    const double slope =
        (p[i + 1].smoothed - p[i - 1].smoothed) / (std::log(p[i + 1].lr) - std::log(p[i - 1].lr));
    if (slope < steepest) {
      steepest = slope;
      result.suggested_lr = p[i].lr;
    }
  }
}

nlohmann::json to_json(const LrRangeResult& result, const LrRangeOptions& options) {
  nlohmann::json points = nlohmann::json::array();
  for (const auto& p : result.points)
    points.push_back({{"lr", p.lr}, {"loss", p.loss}, {"smoothed_loss", p.smoothed}});
  return {
      {"suggested_lr", result.suggested_lr},
      {"min_loss_lr", result.min_loss_lr},
      {"stopped", result.stopped},
      {"min_lr", options.min_lr},
      {"max_lr", options.max_lr},
      {"steps", options.steps},
      {"method", "steepest descent of the bias-corrected EMA of the loss per log lr (Smith 2017)"},
      {"points", points}};
}

cv::Mat lr_range_chart(const LrRangeResult& result, int width, int height) {
  cv::Mat image(height, width, CV_8UC3, cv::Scalar(255, 255, 255));
  const auto& p = result.points;
  if (p.empty()) return image;
  const int left = 70, right = 20, top = 40, bottom = 50;
  const double x0 = std::log10(p.front().lr), x1 = std::log10(p.back().lr);
  double y0 = p.front().smoothed, y1 = y0;
  for (const auto& q : p) {
    y0 = std::min({y0, q.smoothed, q.loss});
    y1 = std::max(y1, q.smoothed);
  }
  y1 = std::max(y1, y0 + 1e-6);
  const auto px = [&](double lr) {
    return left + static_cast<int>((std::log10(lr) - x0) / std::max(1e-9, x1 - x0) *
                                   (width - left - right));
  };
  const auto py = [&](double loss) {
    const double t = std::clamp((loss - y0) / (y1 - y0), 0.0, 1.0);
    return height - bottom - static_cast<int>(t * (height - top - bottom));
  };
  const cv::Scalar axis(60, 60, 60), raw(200, 200, 200), line(40, 90, 200), mark(200, 60, 40);
  cv::rectangle(image, {left, top}, {width - right, height - bottom}, axis, 1);
  for (int decade = static_cast<int>(std::ceil(x0)); decade <= std::floor(x1); ++decade) {
    const int x = px(std::pow(10.0, decade));
    cv::line(image, {x, height - bottom}, {x, height - bottom + 5}, axis, 1);
    cv::putText(image, fmt::format("1e{}", decade), {x - 14, height - bottom + 20},
                cv::FONT_HERSHEY_SIMPLEX, 0.4, axis, 1, cv::LINE_AA);
  }
  for (int i = 0; i <= 4; ++i) {
    const double v = y0 + (y1 - y0) * i / 4.0;
    cv::putText(image, fmt::format("{:.3g}", v), {8, py(v) + 4}, cv::FONT_HERSHEY_SIMPLEX, 0.4,
                axis, 1, cv::LINE_AA);
  }
  for (size_t i = 1; i < p.size(); ++i) {
    cv::line(image, {px(p[i - 1].lr), py(p[i - 1].loss)}, {px(p[i].lr), py(p[i].loss)}, raw, 1,
             cv::LINE_AA);
  }
  for (size_t i = 1; i < p.size(); ++i) {
    cv::line(image, {px(p[i - 1].lr), py(p[i - 1].smoothed)}, {px(p[i].lr), py(p[i].smoothed)},
             line, 2, cv::LINE_AA);
  }
  const int sx = px(result.suggested_lr);
  cv::line(image, {sx, top}, {sx, height - bottom}, mark, 1, cv::LINE_AA);
  cv::putText(image, fmt::format("suggested lr {:.3g}", result.suggested_lr),
              {std::min(sx + 6, width - 170), top + 18}, cv::FONT_HERSHEY_SIMPLEX, 0.45, mark, 1,
              cv::LINE_AA);
  cv::putText(image, "training loss (grey: per step, blue: smoothed) against learning rate",
              {left, 25}, cv::FONT_HERSHEY_SIMPLEX, 0.45, axis, 1, cv::LINE_AA);
  cv::putText(image, "learning rate (log scale)", {width / 2 - 80, height - 12},
              cv::FONT_HERSHEY_SIMPLEX, 0.45, axis, 1, cv::LINE_AA);
  return image;
}

}  // namespace finch::train
