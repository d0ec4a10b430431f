#pragma once
// Prediction with a self-describing model file: its recorded eval preprocessing, then
// softmax top-k over the classes stored in the file.
#include <opencv2/core.hpp>
#include <string>
#include <vector>

#include "finch/models/inference.h"
#include "finch/models/model_file.h"

namespace finch::eval {

struct ClassScore {
  std::string name;
  int64_t index = 0;
  double prob = 0;
};

class Predictor {
 public:
  /// Keeps an inference-optimised copy of `model` (models::optimize_for_inference).
  explicit Predictor(models::LoadedModel model);
  /// Top-k classes for each RGB8 image (k clamped to the number of classes).
  std::vector<std::vector<ClassScore>> predict(const std::vector<cv::Mat>& rgb_images, int64_t k);
  const models::ModelInfo& info() const { return model_.info; }

 private:
  models::InferenceOptions inference_;
  models::LoadedModel model_;
  data::Pipeline pipeline_;
};

}  // namespace finch::eval
