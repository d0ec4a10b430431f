#include "finch/eval/session.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>

#include "finch/core/error.h"
#include "finch/core/sha256.h"
#include "finch/eval/precision.h"

namespace finch::eval {

InferenceSession::InferenceSession(const std::filesystem::path& model_file, SessionOptions options)
    : options_(options) {
  // The file's identity is hashed when first asked for (embeddings files, galleries, serve):
  // `finch predict` never needs it, and hashing a ResNet-50 file took a fifth of its CPU time
  // at start-up (and an async future's destructor would wait for it at exit).
  hash_ =
      std::async(std::launch::deferred, [model_file] { return sha256_file(model_file); }).share();
  build(models::load_model_file(model_file), /*owned=*/true);
}

InferenceSession::InferenceSession(models::LoadedModel model, SessionOptions options)
    : options_(options) {
  std::promise<std::string> none;
  none.set_value("");
  hash_ = none.get_future().share();
  // The caller may hold the same module (a Classifier is a shared handle): optimise a copy.
  build(std::move(model), /*owned=*/false);
}

SessionOptions session_options_for_dtype(const std::string& dtype) {
  SessionOptions options;
  if (dtype == "auto")
    options.auto_dtype = true;
  else
    options.dtype = models::parse_inference_dtype(dtype);
  return options;
}

const std::string& InferenceSession::content_hash() const { return hash_.get(); }

void InferenceSession::build(models::LoadedModel loaded, bool owned) {
  if (!loaded.model) throw Error("inference session: no model");
  info_ = loaded.info;
  pipeline_ = models::eval_pipeline(info_.preprocess);
  if (options_.auto_dtype) {
    const DtypeDecision decision = decide_inference_dtype(info_);
    options_.dtype = decision.dtype;
    dtype_decision_ = decision.summary();
  } else if (options_.dtype == torch::kQUInt8) {
    inference_.int8_ranges = recorded_int8_ranges(info_);  // throws with how to record them
    const nlohmann::json& check = info_.dtype_checks["int8"];
    dtype_decision_ = fmt::format(
        "int8 (asked for; calibrated on {} {} images, top-1 agreement with fp32 {:.2f}% on {} {} "
        "images)",
        check["calibration"].value("images", int64_t{0}),
        check["calibration"].value("split", std::string("?")), 100 * check.value("agreement", 0.0),
        check.value("images", int64_t{0}), check.value("split", std::string("?")));
  } else {
    dtype_decision_ = options_.dtype == torch::kBFloat16 ? "bf16 (asked for)" : "fp32";
  }
  inference_.dtype = options_.dtype;
  if (!options_.optimize) {
    inference_.fold_batchnorm = false;
    inference_.channels_last = false;
    inference_.onednn_layout = false;
  }
  if (!models::channels_last_is_safe(*loaded.model)) inference_.channels_last = false;
  if (owned && !options_.keep_source_model) {
    model_ = models::optimize_in_place(loaded.model, inference_);  // read from the file for us
  } else {
    // Grad-CAM needs the unfolded, autograd-capable model next to the optimised copy, and a
    // caller's model stays as it was.
    model_ = models::optimize_for_inference(info_.arch, loaded.model, inference_);
    if (options_.keep_source_model) source_ = std::move(loaded);
  }
  models::set_blas_threads_for(model_);
}

torch::Tensor InferenceSession::preprocess(const cv::Mat& rgb) const {
  Rng unused(0);  // eval pipelines are deterministic
  return pipeline_(rgb, unused);
}

torch::Tensor InferenceSession::preprocess(const std::vector<cv::Mat>& rgb_images) const {
  if (rgb_images.empty()) throw Error("inference session: no images to preprocess");
  std::vector<torch::Tensor> rows;
  rows.reserve(rgb_images.size());
  for (const auto& image : rgb_images) rows.push_back(preprocess(image));
  return torch::stack(rows);
}

models::ModelOutput InferenceSession::forward_model(const torch::Tensor& batch) {
  TORCH_CHECK(batch.dim() == 4 && batch.size(1) == 3, "expected a [B, 3, H, W] batch, got ",
              batch.sizes());
  std::lock_guard<std::mutex> lock(forward_mutex_);
  c10::InferenceMode inference;
  return model_->forward(models::prepare_inference_input(batch, inference_));
}

InferenceOutput InferenceSession::forward(const torch::Tensor& batch, bool normalize_embedding) {
  models::ModelOutput output = forward_model(batch);
  c10::InferenceMode inference;
  InferenceOutput out;
  out.logits = output.logits.to(torch::kFloat).contiguous();
  out.probabilities = torch::softmax(out.logits, 1);
  if (output.embedding.defined()) {
    out.embedding = output.embedding.to(torch::kFloat).contiguous();
    if (normalize_embedding)
      out.embedding = torch::nn::functional::normalize(
          out.embedding, torch::nn::functional::NormalizeFuncOptions().dim(1).eps(1e-12));
  }
  return out;
}

InferenceOutput InferenceSession::run(const std::vector<cv::Mat>& rgb_images,
                                      bool normalize_embedding) {
  return forward(preprocess(rgb_images), normalize_embedding);
}

models::LoadedModel& InferenceSession::source_model() {
  if (!source_.model)
    throw Error("inference session: opened without keep_source_model, so no gradients");
  return source_;
}

std::vector<std::vector<ClassScore>> top_k(const torch::Tensor& probabilities,
                                           const std::vector<std::string>& classes, int64_t k) {
  TORCH_CHECK(
      probabilities.dim() == 2 && probabilities.size(1) == static_cast<int64_t>(classes.size()),
      "top_k: probabilities ", probabilities.sizes(), " for ", classes.size(), " classes");
  std::vector<std::vector<ClassScore>> results;
  if (probabilities.size(0) == 0) return results;
  k = std::clamp<int64_t>(k, 1, probabilities.size(1));
  auto [values, indices] = probabilities.to(torch::kFloat).topk(k, 1);
  auto v = values.accessor<float, 2>();
  auto idx = indices.accessor<int64_t, 2>();
  for (int64_t i = 0; i < values.size(0); ++i) {
    std::vector<ClassScore> top;
    for (int64_t j = 0; j < k; ++j) top.push_back({classes.at(idx[i][j]), idx[i][j], v[i][j]});
    results.push_back(std::move(top));
  }
  return results;
}

}  // namespace finch::eval
