#pragma once
// CUB-200-2011 (format "cub"): the dataset with its part locations and binary attributes,
// which part- and attribute-based fine-grained methods use. Open it through the format
// registry (`open_dataset("cub", root, split)`) and dynamic_cast the result to reach them.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "finch/data/dataset.h"

namespace finch::data {

/// One annotated part of one image, in pixels of the decoded image.
struct PartLocation {
  /// 0-based index into part_names(): the rank of the file's part id among the ids of
  /// parts/parts.txt (CUB: file id 1..15 -> 0..14).
  int part_id = 0;
  float x = 0, y = 0;
  bool visible = false;
};

/// What the id files of a CUB-style dataset (CUB-200-2011, NABirds) say about one image.
struct CubRecord {
  std::filesystem::path path;       // absolute: root/images/<relative path>
  int64_t label = 0;                // 0-based class index
  Box box;                          // bounding_boxes.txt
  std::vector<PartLocation> parts;  // sorted by part_id; empty without parts files
  std::vector<uint8_t> attributes;  // is_present (0/1) per attribute; empty without them
};

/// What CUB-200-2011 and NABirds share: one CubRecord per image, class names and the
/// optional parts. The formats add their own extras (attributes; the class hierarchy).
class CubStyleDataset : public Dataset {
 public:
  CubStyleDataset(std::vector<std::string> classes, std::vector<CubRecord> records,
                  std::vector<std::string> part_names, bool has_parts);

  size_t size() const override { return records_.size(); }
  int64_t label(size_t i) const override { return records_.at(i).label; }
  cv::Mat load_rgb(size_t i) const override;
  std::string describe(size_t i) const override { return records_.at(i).path.string(); }
  std::optional<std::filesystem::path> file(size_t i) const override {
    return records_.at(i).path;
  }
  std::optional<Box> box(size_t i) const override { return records_.at(i).box; }
  const std::vector<std::string>& class_names() const override { return classes_; }

  /// True when parts/parts.txt and parts/part_locs.txt were both found.
  bool has_parts() const { return has_parts_; }
  /// Part locations of sample i (15 per image in CUB, invisible ones at (0, 0)); empty
  /// when !has_parts().
  const std::vector<PartLocation>& parts(size_t i) const { return records_.at(i).parts; }
  /// Names from parts/parts.txt sorted by id; PartLocation::part_id indexes this list.
  const std::vector<std::string>& part_names() const { return part_names_; }

 protected:
  const CubRecord& record(size_t i) const { return records_.at(i); }

 private:
  std::vector<std::string> classes_;
  std::vector<CubRecord> records_;
  std::vector<std::string> part_names_;
  bool has_parts_ = false;
};

/// CUB-200-2011. Class names are exactly as in classes.txt, number prefix kept
/// ("001.Black_footed_Albatross"), the same names the images/ folders carry (and ImageFolder
/// on images/ would give).
class CubDataset : public CubStyleDataset {
 public:
  CubDataset(std::vector<std::string> classes, std::vector<CubRecord> records,
             std::vector<std::string> part_names, bool has_parts,
             std::vector<std::string> attribute_names, bool has_attributes);

  /// True when attributes/image_attribute_labels.txt was found.
  bool has_attributes() const { return has_attributes_; }
  /// Binary is_present of each attribute (312 in CUB; index = attribute id - 1) for sample
  /// i; empty when !has_attributes().
  const std::vector<uint8_t>& attributes(size_t i) const { return record(i).attributes; }
  /// Names from attributes.txt ("has_bill_shape::dagger"); empty when that file was not
  /// found next to or above the root, even if attribute values were.
  const std::vector<std::string>& attribute_names() const { return attribute_names_; }

 private:
  std::vector<std::string> attribute_names_;
  bool has_attributes_ = false;
};

}  // namespace finch::data
