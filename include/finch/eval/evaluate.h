#pragma once
// Runs a model over every batch of a loader (eval mode, no gradients) and accumulates metrics,
// optionally with test-time augmentation and per-sample records (embeddings, predictions).
#include <torch/types.h>

#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "finch/core/config.h"
#include "finch/core/progress.h"
#include "finch/data/loader.h"
#include "finch/eval/metrics.h"
#include "finch/models/model.h"
#include "finch/models/model_file.h"

namespace finch::eval {

class InferenceSession;  // eval/session.h

/// Test-time augmentation: the softmax is averaged over the views of each image.
///   flip       the image and its horizontal mirror (2 views)
///   five_crop  torchvision FiveCrop: the 4 corners and the centre, each the size of the
///              final center_crop of the eval transforms (or input_size when there is none),
///              cut from the image after the other eval transforms (5 views)
///   ten_crop   the five crops and their mirrors (10 views)
enum class Tta { kNone, kFlip, kFiveCrop, kTenCrop };

/// "none" | "flip" | "five-crop" | "ten-crop"; throws finch::Error otherwise.
Tta parse_tta(const std::string& name);

/// Number of views per image.
int64_t tta_views(Tta tta);

/// The loader pipeline for `tta`: the eval pipeline for none/flip; for five/ten-crop the eval
/// transforms without the final center_crop, then the 5 crops stacked vertically (a batch is
/// then [B, 3, 5 h, w], which evaluate() splits back into views).
data::Pipeline tta_pipeline(const models::Preprocess& preprocess, Tta tta);

/// Per-sample outputs in loader order.
struct EvalRecords {
  std::vector<size_t> indices;  // dataset indices
  torch::Tensor embeddings;     // [N, D] float32 (averaged over TTA views)
  torch::Tensor labels;         // [N] int64
  torch::Tensor predictions;    // [N] int64
  torch::Tensor confidences;    // [N] float32 top-1 probability
};

struct EvalOptions {
  Tta tta = Tta::kNone;
  EvalRecords* records = nullptr;  // filled when set
  /// Data-parallel evaluation: called with this shard's accumulator before the metrics are
  /// computed; merges the other ranks' shares into it (see train/distributed.h).
  std::function<void(MetricsAccumulator&)> combine;
};

/// A batch [B, 3, H, W] (already on the model's device) -> the model's output.
using ForwardFn = std::function<models::ModelOutput(const torch::Tensor&)>;

/// Evaluates `forward` on one pass of `loader` (started here as epoch 0), without gradients.
/// With TTA the loader must use tta_pipeline(); the metrics see log(mean softmax over views)
/// as logits.
Metrics evaluate(const ForwardFn& forward, data::Loader& loader, const torch::Device& device,
                 ProgressStyle progress, const std::string& label = "eval",
                 const EvalOptions& options = {});

/// The same for a model (put in eval mode for the pass, then restored).
Metrics evaluate(models::Classifier& model, data::Loader& loader, const torch::Device& device,
                 ProgressStyle progress, const std::string& label = "eval",
                 const EvalOptions& options = {});

/// Up to `per_pair` samples (dataset.describe: paths) of each of metrics.most_confused, in
/// loader order: {"true", "predicted", "count", "examples": [...]}.
nlohmann::json confused_examples(const Metrics& metrics, const EvalRecords& records,
                                 const data::Dataset& dataset, size_t per_pair);

/// Writes embeddings [N, D] float32, labels and predictions [N] int64 and the dataset indices
/// as safetensors, with the class names (JSON) in the metadata under "classes".
void save_embeddings(const std::filesystem::path& path, const EvalRecords& records,
                     const std::vector<std::string>& class_names);

/// How to evaluate a model file on one split of a dataset.
struct SplitEvalOptions {
  std::string split = "test";
  int64_t batch_size = 256;
  int workers = 2;
  Tta tta = Tta::kNone;
  bool records = false;  // fill SplitEvaluation::records (embeddings, predictions)
  ProgressStyle progress = ProgressStyle::kAuto;
  /// Data-parallel evaluation: this process evaluates shard `shard_rank` of `shard_count`
  /// (each image once) and `combine` merges the shards' metrics (EvalOptions::combine).
  int shard_rank = 0, shard_count = 1;
  std::function<void(MetricsAccumulator&)> combine;
};

struct SplitEvaluation {
  data::DatasetPtr dataset;
  std::string source;  // data::EvalSplit::source: the split, or the carve of "val"
  Metrics metrics;
  EvalRecords records;
  std::vector<data::SkippedSample> skipped;  // unreadable images
};

/// The one "open the split, check its classes are the model's, evaluate" flow of `finch eval`
/// and `finch report`: `config`'s data section names the dataset (data.format, data.root and
/// the format's options; data.crop_to_box is honoured); "val" on a format without one is the
/// trainer's carve (data::open_eval_split). Throws finch::Error when the split's
/// classes differ from the model's (names or order).
SplitEvaluation evaluate_split(InferenceSession& session, const Config& config,
                               const SplitEvalOptions& options);

}  // namespace finch::eval
