#pragma once
// The inference seam: every consumer of a model file (predict, eval, embed, gallery, search,
// explain, localize, report, serve, data doctor) loads it through one InferenceSession and
// runs the same flow: RGB8 image -> the file's recorded eval preprocessing -> a batch -> one
// forward of the inference copy -> logits, probabilities and the embedding.
#include <torch/types.h>

#include <filesystem>
#include <future>
#include <mutex>
#include <opencv2/core.hpp>
#include <string>
#include <vector>

#include "finch/data/transforms.h"
#include "finch/models/inference.h"
#include "finch/models/model_file.h"

namespace finch::eval {

struct SessionOptions {
  torch::Dtype dtype = torch::kFloat;  // kBFloat16: bf16 weights and activations (AVX512_BF16);
                                       // kQUInt8: int8 with the file's recorded calibration
  /// `--dtype auto`: `dtype` is decided from the loaded model's recorded bf16 check and this
  /// CPU (eval/precision.h); dtype_decision() says what was chosen and why.
  bool auto_dtype = false;
  bool optimize = true;  // the inference copy (BatchNorm folded, channels-last / oneDNN layout)
  /// Keep the loaded, autograd-capable model next to the inference copy: Grad-CAM needs
  /// gradients through the unfolded network (explain, localize, report).
  bool keep_source_model = false;
};

/// Session options for a `--dtype` value: "fp32", "bf16", "int8", or "auto" (auto_dtype). Throws
/// finch::Error for anything else.
SessionOptions session_options_for_dtype(const std::string& dtype);

/// What one forward pass returns, by name. All float32 on the CPU.
struct InferenceOutput {
  torch::Tensor logits;         // [B, C]
  torch::Tensor probabilities;  // [B, C] softmax of the logits
  torch::Tensor embedding;      // [B, D] the head's input feature (L2-normalised on request)
};

struct ClassScore {
  std::string name;
  int64_t index = 0;
  double prob = 0;
};

class InferenceSession {
 public:
  /// Reads and validates the model file once and records its SHA-256 (its identity).
  explicit InferenceSession(const std::filesystem::path& model_file, SessionOptions options = {});
  /// From a model already in memory (tests, `finch bench`); content_hash() is then "".
  explicit InferenceSession(models::LoadedModel model, SessionOptions options = {});

  /// One RGB8 HxWx3 image -> [3, H, W] float32, the file's eval pipeline. Thread-safe (the
  /// pipeline is immutable and deterministic), so decode workers may call it concurrently.
  torch::Tensor preprocess(const cv::Mat& rgb) const;
  /// Several images -> [B, 3, H, W].
  torch::Tensor preprocess(const std::vector<cv::Mat>& rgb_images) const;

  /// A preprocessed batch [B, 3, H, W] -> logits, probabilities, embedding. Calls are
  /// serialised (one forward at a time uses all compute threads).
  InferenceOutput forward(const torch::Tensor& batch, bool normalize_embedding = false);
  /// The raw model output of the inference copy for a preprocessed batch (dtype and memory
  /// format converted here): what eval::evaluate consumes.
  models::ModelOutput forward_model(const torch::Tensor& batch);
  /// preprocess + forward.
  InferenceOutput run(const std::vector<cv::Mat>& rgb_images, bool normalize_embedding = false);

  const models::ModelInfo& info() const { return info_; }
  const std::vector<std::string>& classes() const { return info_.classes; }
  /// SHA-256 of the model file (as `sha256sum` prints it); "" for in-memory models.
  const std::string& content_hash() const;
  const data::Pipeline& pipeline() const { return pipeline_; }
  const SessionOptions& options() const { return options_; }
  /// The dtype this session runs in and why ("bf16: 99.9% top-1 agreement with fp32 on 2000
  /// validation images, AVX512_BF16"), for logs and JSON.
  const std::string& dtype_decision() const { return dtype_decision_; }
  /// "fp32" or "bf16": what forward() runs in.
  std::string dtype_name() const {
    if (options_.dtype == torch::kQUInt8) return "int8";
    return options_.dtype == torch::kBFloat16 ? "bf16" : "fp32";
  }
  /// The autograd-capable model; throws finch::Error unless keep_source_model was set.
  models::LoadedModel& source_model();

 private:
  /// `owned`: the session read the model itself, so it may optimise it in place.
  void build(models::LoadedModel model, bool owned);

  SessionOptions options_;
  std::string dtype_decision_;
  models::InferenceOptions inference_;
  models::ModelInfo info_;
  models::Classifier model_{nullptr};
  models::LoadedModel source_;
  data::Pipeline pipeline_;
  std::shared_future<std::string> hash_;  // computed in the background at load
  std::mutex forward_mutex_;
};

/// Top-k classes of each row of probabilities [B, C] (k clamped to [1, C]).
std::vector<std::vector<ClassScore>> top_k(const torch::Tensor& probabilities,
                                           const std::vector<std::string>& classes, int64_t k);

}  // namespace finch::eval
