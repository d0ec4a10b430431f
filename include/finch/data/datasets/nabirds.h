#pragma once
// NABirds (format "nabirds"): CUB-style files plus a class hierarchy. Class ids in the files
// are not contiguous (they number every node of the taxonomy); finch's class indices are
// 0..N-1 over the ids that label images, in increasing id order.
#include <cstdint>
#include <string>
#include <vector>

#include "finch/data/datasets/cub.h"

namespace finch::data {

/// Class names are those of classes.txt (spaces kept), e.g. "Black-footed Albatross".
class NABirdsDataset : public CubStyleDataset {
 public:
  NABirdsDataset(std::vector<std::string> classes, std::vector<int64_t> original_ids,
                 std::vector<int64_t> parent_ids, std::vector<CubRecord> records,
                 std::vector<std::string> part_names, bool has_parts);

  /// The id classes.txt gives class index `class_index`.
  int64_t original_class_id(size_t class_index) const { return original_ids_.at(class_index); }
  /// Original id of the parent of class `class_index` in hierarchy.txt, or -1 if it has none.
  int64_t parent_of(size_t class_index) const { return parent_ids_.at(class_index); }

 private:
  std::vector<int64_t> original_ids_, parent_ids_;
};

}  // namespace finch::data
