#pragma once
// Internal: a dataset held as one record per sample (image path, label, optional box), the
// shape of the benchmarks whose annotations are read up front (cars, dogs, flowers102).
#include <fmt/format.h>

#include <cmath>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "finch/data/dataset.h"
#include "finch/io/image.h"

namespace finch::data {

struct ImageRecord {
  std::filesystem::path path;
  int64_t label = 0;
  std::optional<Box> box;
};

class RecordDataset : public Dataset {
 public:
  RecordDataset(std::vector<std::string> classes, std::vector<ImageRecord> records)
      : classes_(std::move(classes)), records_(std::move(records)) {}

  size_t size() const override { return records_.size(); }
  int64_t label(size_t i) const override { return records_.at(i).label; }
  cv::Mat load_rgb(size_t i) const override { return io::read_image_rgb(records_.at(i).path); }
  std::string describe(size_t i) const override { return records_.at(i).path.string(); }
  std::optional<std::filesystem::path> file(size_t i) const override {
    return records_.at(i).path;
  }
  std::optional<Box> box(size_t i) const override { return records_.at(i).box; }
  const std::vector<std::string>& class_names() const override { return classes_; }

 protected:
  const ImageRecord& record(size_t i) const { return records_.at(i); }

 private:
  std::vector<std::string> classes_;
  std::vector<ImageRecord> records_;
};

/// A number read from a .mat file, for messages ("103", "2.5").
inline std::string number_text(double v) { return fmt::format("{}", v); }

/// A box given as MATLAB/VOC-style corners (1-based pixel indices, both ends inclusive) as a
/// 0-based finch Box: x = x1 - 1, width = x2 - x1 + 1. A corner at 0 (seen in some
/// ImageNet-derived files) is clamped to the image edge. nullopt when the corners are not
/// finite or x2 < x1 or y2 < y1.
inline std::optional<Box> box_from_inclusive_corners(double x1, double y1, double x2, double y2) {
  if (!std::isfinite(x1) || !std::isfinite(y1) || !std::isfinite(x2) || !std::isfinite(y2) ||
      x2 < x1 || y2 < y1)
    return std::nullopt;
  const double left = std::max(0.0, x1 - 1), top = std::max(0.0, y1 - 1);
  return Box{static_cast<float>(left), static_cast<float>(top), static_cast<float>(x2 - left),
             static_cast<float>(y2 - top)};
}

}  // namespace finch::data
