#pragma once
// Pieces shared by the doctor's translation units (not part of the public API).
#include <torch/types.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "finch/data/dataset.h"
#include "finch/doctor/doctor.h"

namespace finch::doctor {

namespace detail {

int thread_count(int threads);
/// body(i) for i in [0, n) on `threads` threads with a progress bar; rethrows the first error.
void parallel_for(size_t n, int threads, const std::string& label, ProgressStyle style,
                  const std::function<void(size_t)>& body);
/// Which copy of a duplicate pair is kept: test over val over other splits over train, then
/// the one with more pixels (the original rather than a thumbnail of it), then the first.
size_t keeper_of(const DoctorReport& r, size_t a, size_t b);
/// Records a duplicate pair and flags the copy that goes (leak, conflicting_labels,
/// exact_duplicate or near_duplicate); `dropped` marks items already going.
void add_pair(DoctorReport& r, size_t a, size_t b, const std::string& kind, double distance,
              std::vector<bool>& dropped);

}  // namespace detail

/// What a model says about every item: softmax probabilities in the dataset's class order
/// and unit embeddings (rows of items it could not read stay empty: has_row false).
struct ModelSignals {
  std::string source;
  torch::Tensor probabilities;  // [items, classes] float64, undefined without a model
  torch::Tensor embeddings;     // [items, D] float32, undefined without a model
  std::vector<bool> has_row;
  bool has_probabilities() const { return probabilities.defined(); }
};

ModelSignals model_signals(const Config& config, const DoctorOptions& options,
                           const DoctorReport& report,
                           const std::vector<data::DatasetPtr>& datasets,
                           const std::map<std::string, size_t>& dataset_of_split);

/// Embedding near-duplicates and outliers, label issues by confident learning.
void apply_model_signals(DoctorReport& report, const DoctorOptions& options,
                         const ModelSignals& signals, std::vector<bool>& dropped);

/// Per-class accuracy against class size (from the probabilities).
nlohmann::json class_accuracy(const DoctorReport& report, const ModelSignals& signals);

/// Figures per group of a `path,group...` CSV: images, and with probabilities accuracy,
/// confidence and calibration error, and the largest gap of each group column.
nlohmann::json group_figures(const DoctorReport& report, const std::filesystem::path& groups,
                             const ModelSignals& signals);

}  // namespace finch::doctor
