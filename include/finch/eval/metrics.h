#pragma once
// Classification metrics accumulated over batches: top-k accuracy, mean per-class
// accuracy (FGVC-Aircraft's official metric), per-class precision/recall/F1, macro and
// weighted averages, the confusion matrix and the most-confused class pairs.
#include <torch/types.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace finch::eval {

struct ClassMetrics {
  std::string name;
  double precision = 0, recall = 0, f1 = 0;
  int64_t support = 0;  // true samples of the class
};

struct ConfusedPair {
  int64_t true_class, predicted_class, count;
};

/// One equal-width confidence bin of a reliability diagram: samples whose top-1 softmax
/// probability lies in (lower, upper] (the first bin also holds confidence 0).
struct CalibrationBin {
  double lower = 0, upper = 0;
  int64_t count = 0;
  double confidence = 0, accuracy = 0;  // means over the bin's samples (0 when empty)
};

/// Expected calibration error (Guo et al., ICML 2017): sum over bins of
/// (bin count / N) * |bin accuracy - bin mean confidence|.
struct Calibration {
  double ece = 0;
  std::vector<CalibrationBin> bins;
};

/// Calibration from per-sample top-1 confidences and whether the top-1 class was right.
Calibration calibration(const std::vector<double>& confidences, const std::vector<bool>& correct,
                        int num_bins = 15);

struct Metrics {
  int64_t num_samples = 0;
  double loss = 0;  // mean cross-entropy (no label smoothing)
  double top1 = 0, top5 = 0, mean_class_accuracy = 0;
  std::vector<ClassMetrics> per_class;
  double macro_precision = 0, macro_recall = 0, macro_f1 = 0;
  double weighted_precision = 0, weighted_recall = 0, weighted_f1 = 0;
  std::vector<std::vector<int64_t>> confusion;  // [true][predicted]
  std::vector<ConfusedPair> most_confused;      // off-diagonal cells, largest first
  Calibration calibration;                      // 15 equal-width bins
};

class MetricsAccumulator {
 public:
  explicit MetricsAccumulator(std::vector<std::string> class_names);
  /// logits [B, C] (any float type), labels [B] int64.
  void add(const torch::Tensor& logits, const torch::Tensor& labels);
  Metrics finish(size_t max_confused_pairs = 10) const;

  /// Everything accumulated so far as one float64 vector, for merging the shards of a
  /// data-parallel evaluation (counts are exact in float64 below 2^53).
  torch::Tensor pack() const;
  /// Adds another accumulator's pack() (same classes): the result is what one accumulator
  /// fed both shares would hold (sums equal up to float64 summation order).
  void merge_packed(const torch::Tensor& packed);
  const std::vector<std::string>& class_names() const { return class_names_; }

 private:
  std::vector<std::string> class_names_;
  std::vector<std::vector<int64_t>> confusion_;
  int64_t samples_ = 0, top5_correct_ = 0;
  double loss_sum_ = 0;
  std::vector<double> confidences_;
  std::vector<bool> correct_;
};

/// The JSON object `finch eval --json` prints (top1, top5, mean_class_accuracy, per_class,
/// confusion_matrix, num_samples, ...).
nlohmann::json to_json(const Metrics& metrics);
/// A human-readable summary with the per-class table.
std::string format_report(const Metrics& metrics);
/// Per-class accuracy (recall), worst first, ties by name: "class  accuracy  correct/support".
std::string format_per_class_worst_first(const Metrics& metrics);
/// The confusion matrix as CSV with class names as header row and first column.
std::string confusion_csv(const Metrics& metrics);

}  // namespace finch::eval
