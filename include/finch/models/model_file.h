#pragma once
// Self-describing model files: safetensors whose "__metadata__" holds
//   "format": "finch-model", "finch": JSON {version, arch, classes, preprocess, training}
// so eval/predict/serve need nothing but the file. The tensors use the classifier's names
// (backbone.conv1.weight, head.fc.weight, ...): torchvision names under a prefix.
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "finch/models/model.h"

namespace finch::data {
class Pipeline;  // data/transforms.h: only eval_pipeline() below returns one
}  // namespace finch::data

namespace finch::models {

/// How images must be prepared for the model: eval transforms + normalisation.
struct Preprocess {
  nlohmann::json eval_transforms = nlohmann::json::array();  // the YAML list, as JSON
  std::vector<float> mean{0.485f, 0.456f, 0.406f};
  std::vector<float> std{0.229f, 0.224f, 0.225f};
  int64_t input_size = 224;
};

struct ModelInfo {
  ModelSpec arch;                    // backbone, head, num_classes, ...
  std::vector<std::string> classes;  // index -> class name
  Preprocess preprocess;
  nlohmann::json training = nlohmann::json::object();  // provenance: epoch, val_acc, config
  /// Rejection thresholds of "none of these" (`finch eval --open-set --calibrate-tpr`):
  /// {"tpr", "split", "default", "thresholds": {score: value}}; null when never calibrated.
  nlohmann::json open_set;
  /// Reduced-precision checks (eval/precision.h): {"bf16": {"agreement", "max_abs_prob_diff",
  /// "images", "split", "cpu"}}, what `--dtype auto` decides from; null when never checked.
  nlohmann::json dtype_checks;
  std::string finch_version;  // filled in on save
};

struct LoadedModel {
  Classifier model{nullptr};
  ModelInfo info;
};

/// Writes the model's weights and info atomically.
void save_model_file(const std::filesystem::path& path, Classifier& model, const ModelInfo& info);

/// Reads, validates and builds the model (eval mode, CPU). Throws finch::Error when the
/// file is not a finch model file, its metadata is malformed or the weights do not fit.
LoadedModel load_model_file(const std::filesystem::path& path);

/// The evaluation pipeline recorded in the file.
data::Pipeline eval_pipeline(const Preprocess& preprocess);

}  // namespace finch::models
