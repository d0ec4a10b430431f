#pragma once
// NABirds (format "nabirds"): CUB-style files plus a class hierarchy. Class ids in the files
// are not contiguous (they number every node of the taxonomy); finch's class indices are
// 0..N-1 over the ids that label images, in increasing id order.
#include <cstdint>
#include <string>
#include <vector>

#include "finch/data/datasets/cub.h"

namespace finch::data {

class NABirdsDataset : public Dataset {
 public:
  NABirdsDataset(std::vector<std::string> classes, std::vector<int64_t> original_ids,
                 std::vector<int64_t> parent_ids, std::vector<CubRecord> records,
                 std::vector<std::string> part_names, bool has_parts);

  size_t size() const override { return records_.size(); }
  int64_t label(size_t i) const override { return records_.at(i).label; }
  cv::Mat load_rgb(size_t i) const override;
  std::string describe(size_t i) const override { return records_.at(i).path.string(); }
  std::optional<Box> box(size_t i) const override { return records_.at(i).box; }
  /// Names from classes.txt (spaces kept), e.g. "Black-footed Albatross".
  const std::vector<std::string>& class_names() const override { return classes_; }

  /// The id classes.txt gives class index `class_index`.
  int64_t original_class_id(size_t class_index) const { return original_ids_.at(class_index); }
  /// Original id of the parent of class `class_index` in hierarchy.txt, or -1 if it has none.
  int64_t parent_of(size_t class_index) const { return parent_ids_.at(class_index); }

  bool has_parts() const { return has_parts_; }
  /// Part locations of sample i (empty when !has_parts()); see CubDataset::parts.
  const std::vector<PartLocation>& parts(size_t i) const { return records_.at(i).parts; }
  const std::vector<std::string>& part_names() const { return part_names_; }

 private:
  std::vector<std::string> classes_;
  std::vector<int64_t> original_ids_, parent_ids_;
  std::vector<CubRecord> records_;
  std::vector<std::string> part_names_;
  bool has_parts_ = false;
};

}  // namespace finch::data
