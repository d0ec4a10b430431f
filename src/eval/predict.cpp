#include "finch/eval/predict.h"

#include <torch/torch.h>

#include "finch/models/inference.h"

namespace finch::eval {

Predictor::Predictor(models::LoadedModel model)
    : model_(std::move(model)), pipeline_(models::eval_pipeline(model_.info.preprocess)) {
  // Serve an optimised copy (BatchNorm folded, channels-last); the loaded weights go.
  model_.model = models::optimize_for_inference(model_.info.arch, model_.model, inference_);
}

std::vector<std::vector<ClassScore>> Predictor::predict(const std::vector<cv::Mat>& rgb_images,
                                                        int64_t k) {
  std::vector<std::vector<ClassScore>> results;
  if (rgb_images.empty()) return results;
  std::vector<torch::Tensor> inputs;
  Rng unused(0);  // eval pipelines are deterministic
  for (const auto& image : rgb_images) inputs.push_back(pipeline_(image, unused));
  c10::InferenceMode inference;
  torch::Tensor input = models::prepare_inference_input(torch::stack(inputs), inference_);
  torch::Tensor probs = torch::softmax(model_.model->forward(input).logits.to(torch::kFloat), 1);
  k = std::clamp<int64_t>(k, 1, probs.size(1));
  auto [values, indices] = probs.topk(k, 1);
  auto v = values.accessor<float, 2>();
  auto idx = indices.accessor<int64_t, 2>();
  for (int64_t i = 0; i < probs.size(0); ++i) {
    std::vector<ClassScore> top;
    for (int64_t j = 0; j < k; ++j) {
      top.push_back({model_.info.classes.at(idx[i][j]), idx[i][j], v[i][j]});
    }
    results.push_back(std::move(top));
  }
  return results;
}

}  // namespace finch::eval
