#pragma once
// Weakly supervised localization: a class activation / attention map -> one box, scored
// against the annotated box by IoU; CorLoc is the share of images with IoU >= 0.5.
// Rule (CAM, Zhou et al. CVPR 2016, who threshold at 20% of the max): upsample the map
// bilinearly to the model input, keep pixels >= threshold * max, take the largest
// 8-connected component and its bounding box. The box is then mapped back through the
// eval transforms' resize and center_crop to original-image pixels.
#include <torch/types.h>

#include <nlohmann/json.hpp>
#include <vector>

#include "finch/data/dataset.h"

namespace finch::explain {

/// The box of the largest connected region of `cam` [h, w] (values >= threshold * max) after
/// bilinear upsampling to width x height, in pixels of that resolution (x, y, w, h). An
/// all-zero map gives the whole image.
data::Box cam_to_box(const torch::Tensor& cam, double threshold, int width, int height);

/// Where an original image lands in the model input: input = original * scale - offset
/// (per axis), from the eval transforms' resize and center_crop.
struct InputGeometry {
  double scale_x = 1, scale_y = 1, offset_x = 0, offset_y = 0;
  int input_width = 0, input_height = 0;
};

/// Follows the eval transforms (the YAML list as JSON) for an image of width x height. Only
/// resize and center_crop change geometry; any other geometric op (random crops, rotation,
/// pad_crop) throws finch::Error since boxes could not be mapped back.
InputGeometry input_geometry(const nlohmann::json& eval_transforms, int width, int height);

/// The centre of the highest pixel of `cam` [h, w] after bilinear upsampling to
/// width x height, in pixels of that resolution (the "pointing game" point).
std::pair<double, double> cam_peak(const torch::Tensor& cam, int width, int height);

/// True when the point (x, y) lies inside `box`.
bool inside(const data::Box& box, double x, double y);

/// A box in model-input pixels -> original-image pixels, clipped to the image.
data::Box to_original(const data::Box& box, const InputGeometry& geometry, int width, int height);

/// Intersection over union of two boxes (0 when both are empty).
double iou(const data::Box& a, const data::Box& b);

struct LocalizationSummary {
  size_t images = 0;
  double corloc = 0;    // share of images with IoU >= 0.5
  double mean_iou = 0;  // mean IoU over images
  double pointing = 0;  // share of images whose map peak lies inside the box (pointing game)
};
LocalizationSummary summarize_localization(const std::vector<double>& ious);

}  // namespace finch::explain
