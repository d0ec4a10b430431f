#include "finch/data/box_crop.h"

#include <algorithm>
#include <cmath>

#include "finch/core/error.h"

namespace finch::data {

cv::Rect box_crop_rect(const Box& box, float margin, cv::Size image) {
  const double dx = static_cast<double>(margin) * box.width;
  const double dy = static_cast<double>(margin) * box.height;
  const int left = std::max(0, static_cast<int>(std::floor(box.x - dx)));
  const int top = std::max(0, static_cast<int>(std::floor(box.y - dy)));
  const int right = std::min(image.width, static_cast<int>(std::ceil(box.x + box.width + dx)));
  const int bottom = std::min(image.height, static_cast<int>(std::ceil(box.y + box.height + dy)));
  if (right <= left || bottom <= top) return {};
  return {left, top, right - left, bottom - top};
}

BoxCropDataset::BoxCropDataset(DatasetPtr base, float margin, const std::string& source)
    : base_(std::move(base)), margin_(margin) {
  if (!(margin >= 0) || !std::isfinite(margin))
    throw Error("data.box_margin must be a number >= 0 (a fraction of the box size per side)");
  // A format without boxes answers nullopt at once, so this scan is cheap; it stops at the
  // first box of a format that has them.
  for (size_t i = 0; i < base_->size(); ++i)
    if (base_->box(i)) return;
  throw Error("data.crop_to_box is true but " + source +
              " has no object boxes (formats with boxes: cub, nabirds, aircraft, cars, dogs, "
              "csv with x,y,w,h columns); set data.crop_to_box: false");
}

Box BoxCropDataset::require_box(size_t i) const {
  std::optional<Box> b = base_->box(i);
  if (!b)
    throw Error(base_->describe(i) +
                ": no object box for this image, needed by data.crop_to_box (add its box or "
                "set data.crop_to_box: false)");
  return *b;
}

cv::Mat BoxCropDataset::load_rgb(size_t i) const {
  const Box b = require_box(i);
  cv::Mat image = base_->load_rgb(i);
  const cv::Rect r = box_crop_rect(b, margin_, image.size());
  if (r.empty())
    throw Error(base_->describe(i) + ": object box (x " + std::to_string(b.x) + ", y " +
                std::to_string(b.y) + ", " + std::to_string(b.width) + "x" +
                std::to_string(b.height) + ") lies outside the " + std::to_string(image.cols) +
                "x" + std::to_string(image.rows) + " image");
  return image(r).clone();
}

std::optional<Box> BoxCropDataset::box(size_t i) const {
  std::optional<Box> b = base_->box(i);
  if (!b) return std::nullopt;
  // The crop origin does not depend on the image size (only clipping at the far side does),
  // so the shifted box needs no decode.
  const double dx = static_cast<double>(margin_) * b->width;
  const double dy = static_cast<double>(margin_) * b->height;
  const float left = static_cast<float>(std::max(0.0, std::floor(b->x - dx)));
  const float top = static_cast<float>(std::max(0.0, std::floor(b->y - dy)));
  return Box{b->x - left, b->y - top, b->width, b->height};
}

}  // namespace finch::data
