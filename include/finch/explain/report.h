#pragma once
// `finch report RUN_DIR`: one self-contained HTML page about a training run. Everything is
// inline (PNG images as base64 data URIs, charts as SVG, CSS in a <style>; no JavaScript and
// no external request), so the file can be mailed or opened offline.
#include <filesystem>
#include <string>
#include <vector>

#include "finch/core/progress.h"

namespace finch::explain {

struct ReportOptions {
  std::filesystem::path run_dir;
  std::filesystem::path model;  // default: RUN_DIR/best.safetensors
  /// Evaluation data; empty format/root: the run's config.yaml `data` section.
  std::string format, root, split = "test";
  std::vector<std::string> data_options;  // data.* overrides as key=value
  /// A `class,parent` CSV; empty: the hierarchy the dataset format ships, if any. With one,
  /// the report adds a "mistakes by parent" section and groups the confusion matrix.
  std::filesystem::path hierarchy;
  int gallery = 6;                        // Grad-CAM examples of each of correct / wrong
  int confused_pairs = 8, thumbnails = 3;
  int64_t tsne_points = 1500;  // t-SNE subsample (exact t-SNE is O(N^2))
  int64_t batch_size = 256;
  int workers = 2;
  ProgressStyle progress = ProgressStyle::kNone;
};

/// The report's HTML text. Throws finch::Error when the run folder has no model file.
std::string build_report(const ReportOptions& options);

/// One SVG line chart (inline, no external references): x values shared by the series.
struct Series {
  std::string name;
  std::vector<double> y;
  std::string colour;
};
std::string line_chart_svg(const std::string& title, const std::vector<double>& x,
                           const std::vector<Series>& series, int width = 420, int height = 260);

}  // namespace finch::explain
