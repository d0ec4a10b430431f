#pragma once
// Cropping to the annotated object (data.crop_to_box): the classic fine-grained setting where
// the box is given at train and test time (CUB "with bounding box" results).
#include <opencv2/core.hpp>
#include <string>

#include "finch/data/dataset.h"

namespace finch::data {

/// Pixel rectangle of `box` enlarged by `margin` x its width (height) on each side, rounded
/// outwards to whole pixels and clipped to an image of `image` size. Empty when the box lies
/// outside the image.
cv::Rect box_crop_rect(const Box& box, float margin, cv::Size image);

/// A view of another dataset whose images are cropped to box_crop_rect(box(i), margin, ...);
/// box(i) is then the box in the cropped image's coordinates.
class BoxCropDataset final : public Dataset {
 public:
  /// Throws finch::Error when no sample of `base` has a box; `source` names the data
  /// ("cub at /data/CUB_200_2011, split 'train'") in that message.
  BoxCropDataset(DatasetPtr base, float margin, const std::string& source);
  size_t size() const override { return base_->size(); }
  int64_t label(size_t i) const override { return base_->label(i); }
  /// Throws finch::Error naming the sample when it has no box.
  cv::Mat load_rgb(size_t i) const override;
  std::string describe(size_t i) const override { return base_->describe(i); }
  std::optional<std::filesystem::path> file(size_t i) const override { return base_->file(i); }
  std::optional<Box> box(size_t i) const override;
  const std::vector<std::string>& class_names() const override { return base_->class_names(); }

 private:
  Box require_box(size_t i) const;
  DatasetPtr base_;
  float margin_;
};

}  // namespace finch::data
