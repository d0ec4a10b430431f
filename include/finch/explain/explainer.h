#pragma once
// Explaining images with a model file: its eval preprocessing, then a class activation or
// attention map per image (explain/cam.h). Shared by `finch explain`, `finch localize` and
// the report's Grad-CAM gallery.
#include <opencv2/core.hpp>
#include <string>
#include <vector>

#include "finch/core/progress.h"
#include "finch/data/dataset.h"
#include "finch/eval/session.h"
#include "finch/explain/cam.h"
#include "finch/explain/localize.h"
#include "finch/models/model_file.h"

namespace finch::explain {

struct Explanation {
  cv::Mat input_rgb;   // the image as the model sees it (after resize/crop), RGB8
  torch::Tensor cam;   // [h, w] in [0, 1] at feature-map resolution
  int64_t target = 0;  // class the map explains
  int64_t predicted = 0;
  double predicted_prob = 0, target_prob = 0;
};

class Explainer {
 public:
  /// Explains with the autograd-capable model of `session` (opened with keep_source_model;
  /// it must outlive the explainer) and the session's eval preprocessing.
  explicit Explainer(eval::InferenceSession& session);
  /// Maps for RGB8 images; `targets` (one per image, or empty) overrides options.target.
  std::vector<Explanation> explain(const std::vector<cv::Mat>& rgb_images,
                                   const CamOptions& options,
                                   const std::vector<int64_t>& targets = {});
  /// A class given by name or by index; throws finch::Error naming the choices otherwise.
  int64_t class_index(const std::string& name_or_index) const;
  const models::ModelInfo& info() const { return model_.info; }

 private:
  models::LoadedModel& model_;
  data::Pipeline pipeline_;
};

struct DatasetLocalization {
  LocalizationSummary summary;
  std::vector<size_t> indices;   // dataset samples scored (those with a box)
  std::vector<data::Box> boxes;  // predicted boxes, original-image pixels
  std::vector<double> ious;      // against the annotated boxes
  size_t without_box = 0;        // samples skipped for having no box
};

/// Weakly supervised localization over a dataset: each image's map (Grad-CAM of its
/// annotated class when `explain_label`, else of the predicted class; attention maps do not
/// depend on a class) -> cam_to_box at `threshold` on the model input -> original pixels
/// (input_geometry of the eval transforms) -> IoU with dataset.box(i). Throws finch::Error
/// when no sample has a box.
DatasetLocalization localize_dataset(Explainer& explainer, const data::Dataset& dataset,
                                     const CamOptions& options, double threshold,
                                     bool explain_label, ProgressStyle progress);

}  // namespace finch::explain
