#pragma once
// Image transforms on decoded RGB8 images (OpenCV), configured from YAML lists such as
//   - {type: random_resized_crop, size: 224, scale: [0.08, 1.0], ratio: [0.75, 1.3333]}
//   - {type: hflip, p: 0.5}
// A Pipeline runs the image ops on uint8 HWC RGB, then converts to float CHW and
// normalises with (mean, std), then runs the tensor ops (random_erasing). Randomness comes
// only from the Rng passed in, so a sample's augmentation is a function of its seed.
#include <torch/types.h>
#include <yaml-cpp/yaml.h>

#include <memory>
#include <opencv2/core.hpp>
#include <string>
#include <vector>

#include "finch/core/rng.h"

namespace finch::data {

/// One image-space op on an HxWx3 uint8 RGB image.
class ImageTransform {
 public:
  virtual ~ImageTransform() = default;
  virtual cv::Mat apply(const cv::Mat& rgb, Rng& rng) const = 0;
};

/// One op on the normalised float CHW tensor (after normalisation).
class TensorTransform {
 public:
  virtual ~TensorTransform() = default;
  virtual void apply(torch::Tensor& chw, Rng& rng) const = 0;
};

class Pipeline {
 public:
  Pipeline() = default;
  Pipeline(std::vector<std::shared_ptr<const ImageTransform>> image_ops,
           std::vector<std::shared_ptr<const TensorTransform>> tensor_ops, std::vector<float> mean,
           std::vector<float> std);

  /// Image ops only: uint8 RGB in, uint8 RGB out.
  cv::Mat apply_image(const cv::Mat& rgb, Rng& rng) const;
  /// Full pipeline: uint8 RGB HxWx3 in, float32 3xH'xW' normalised tensor out.
  torch::Tensor operator()(const cv::Mat& rgb, Rng& rng) const;
  /// The last two stages separately, so a loader can write each sample straight into its
  /// batch: normalise the image ops' output into `chw` (3 x rows x cols floats), then run
  /// the tensor ops in place (a row of a batch tensor works). `rng` continues from
  /// apply_image's, as in operator().
  void normalize_into(const cv::Mat& rgb, float* chw) const;
  void apply_tensor_ops(torch::Tensor& chw, Rng& rng) const;
  bool has_tensor_ops() const { return !tensor_ops_.empty(); }

  const std::vector<float>& mean() const { return mean_; }
  const std::vector<float>& std() const { return std_; }

 private:
  std::vector<std::shared_ptr<const ImageTransform>> image_ops_;
  std::vector<std::shared_ptr<const TensorTransform>> tensor_ops_;
  std::vector<float> mean_{0.f, 0.f, 0.f};
  std::vector<float> std_{1.f, 1.f, 1.f};
};

/// Builds a pipeline from a YAML sequence of {type: NAME, ...params}. Unknown types and
/// unknown or ill-typed parameters throw finch::Error naming them; tensor ops placed
/// before image ops are an error. `mean`/`std` have 3 entries (RGB, on [0,1] scale).
Pipeline build_pipeline(const YAML::Node& ops, const std::vector<float>& mean,
                        const std::vector<float>& std);

/// uint8 HxWx3 RGB -> float32 3xHxW in [0,1], then (x - mean) / std per channel.
torch::Tensor to_normalized_tensor(const cv::Mat& rgb, const std::vector<float>& mean,
                                   const std::vector<float>& std);
/// The same into `chw` (3 x rows x cols floats, planar): one pass, no temporaries.
void write_normalized(const cv::Mat& rgb, const std::vector<float>& mean,
                      const std::vector<float>& std, float* chw);

/// Names of the supported transform types (for docs and errors).
std::vector<std::string> transform_names();

}  // namespace finch::data
