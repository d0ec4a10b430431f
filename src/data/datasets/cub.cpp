// Format "cub": CUB-200-2011 as it ships (root = the CUB_200_2011 folder, or a folder holding
// it). Splits "train" / "test" from train_test_split.txt; class id c (1..200) is class index
// c - 1, named exactly as in classes.txt ("001.Black_footed_Albatross": the number prefix is
// kept so that names match the images/ folders). Boxes from bounding_boxes.txt. Parts
// (parts/) and attributes (attributes/image_attribute_labels.txt, names from attributes.txt
// in the root, its parent - where the official archive puts it - or attributes/) are
// optional: missing files only turn them off.
#include "finch/data/datasets/cub.h"

#include <algorithm>

#include "cub_style.h"
#include "finch/core/error.h"
#include "finch/data/formats.h"
#include "finch/io/image.h"

namespace finch::data {

CubStyleDataset::CubStyleDataset(std::vector<std::string> classes, std::vector<CubRecord> records,
                                 std::vector<std::string> part_names, bool has_parts)
    : classes_(std::move(classes)),
      records_(std::move(records)),
      part_names_(std::move(part_names)),
      has_parts_(has_parts) {}

cv::Mat CubStyleDataset::load_rgb(size_t i) const {
  return io::read_image_rgb(records_.at(i).path);
}

CubDataset::CubDataset(std::vector<std::string> classes, std::vector<CubRecord> records,
                       std::vector<std::string> part_names, bool has_parts,
                       std::vector<std::string> attribute_names, bool has_attributes)
    : CubStyleDataset(std::move(classes), std::move(records), std::move(part_names), has_parts),
      attribute_names_(std::move(attribute_names)),
      has_attributes_(has_attributes) {}

namespace {

namespace fs = std::filesystem;
using namespace cub_style;

const char* const kFormat = "cub";
constexpr int64_t kMaxUnlistedAttributes = 10000;

fs::path resolve_root(const fs::path& root) {
  if (!file_exists(root / "images.txt") && file_exists(root / "CUB_200_2011" / "images.txt"))
    return root / "CUB_200_2011";
  return root;
}

// attributes.txt: `<attribute_id> <name>`; the official archive puts it next to CUB_200_2011/.
fs::path find_attribute_names(const fs::path& root) {
  for (const fs::path& p : {root / "attributes.txt", root.parent_path() / "attributes.txt",
                            root / "attributes" / "attributes.txt"})
    if (file_exists(p)) return p;
  return {};
}

// Fills records[i].attributes with is_present of every attribute; false when the labels file
// is missing. The official file has a few lines with a sixth field (they break pandas'
// read_csv); only the first three fields are used, so 5 or 6 are accepted.
bool read_attributes(const fs::path& root, const ImageList& images, std::vector<CubRecord>& records,
                     std::vector<std::string>& names) {
  const fs::path file = root / "attributes" / "image_attribute_labels.txt";
  if (!file_exists(file)) return false;
  const fs::path names_file = find_attribute_names(root);
  size_t count = 0;
  if (!names_file.empty()) {
    auto by_id = read_id_names(names_file);
    if (by_id.begin()->first != 1 || by_id.rbegin()->first != static_cast<int64_t>(by_id.size()))
      throw Error(names_file.string() + ": attribute ids must be 1.." +
                  std::to_string(by_id.size()));
    for (auto& [id, name] : by_id) names.push_back(std::move(name));
    count = names.size();
  }
  std::vector<bool> seen(records.size(), false);
  size_t max_id = 0;
  for_each_image_line(file, images, false, [&](const Line& line, size_t pos) {
    line.expect_fields(5, 6, "<image_id> <attribute_id> <is_present> <certainty_id> <time>");
    int64_t id = line.integer(1, "attribute_id");
    if (id < 1 || (count > 0 && id > static_cast<int64_t>(count)))
      line.fail("attribute id " + std::to_string(id) +
                (count > 0 ? " is not listed in " + names_file.string() : " must be >= 1"));
    // Without attributes.txt the ids size a vector per image: refuse an absurd one.
    if (count == 0 && id > kMaxUnlistedAttributes)
      line.fail("attribute id " + std::to_string(id) + " is larger than " +
                std::to_string(kMaxUnlistedAttributes) +
                " (CUB has 312); put attributes.txt next to the labels to list more");
    int64_t present = line.integer(2, "is_present");
    if (present != 0 && present != 1) line.fail("is_present must be 0 or 1");
    auto& values = records[pos].attributes;
    if (values.size() < static_cast<size_t>(id)) values.resize(std::max<size_t>(id, count), 0);
    values[id - 1] = static_cast<uint8_t>(present);
    max_id = std::max(max_id, static_cast<size_t>(id));
    seen[pos] = true;
  });
  for (size_t i = 0; i < seen.size(); ++i)
    if (!seen[i])
      throw Error("image id " + images.ids[i] + " is listed in " + images.file +
                  " but missing from " + file.string());
  if (count == 0) count = max_id;
  for (auto& r : records) r.attributes.resize(count, 0);
  return true;
}

DatasetPtr open_cub(const fs::path& given_root, const std::string& split, const YAML::Node&) {
  const fs::path root = resolve_root(given_root);
  for (const char* name : {"images.txt", "image_class_labels.txt", "train_test_split.txt",
                           "classes.txt", "bounding_boxes.txt"})
    require_file(root / name, kFormat);
  ImageList images = read_image_list(root);

  const fs::path classes_file = root / "classes.txt";
  auto by_id = read_id_names(classes_file);
  std::vector<std::string> classes;
  for (auto& [id, name] : by_id) {
    if (id != static_cast<int64_t>(classes.size()) + 1)
      throw Error(classes_file.string() + ": class ids must be 1.." + std::to_string(by_id.size()) +
                  " without gaps (found id " + std::to_string(id) + ")");
    classes.push_back(std::move(name));
  }
  auto class_ids = read_class_ids(root / "image_class_labels.txt", images, by_id, classes_file);
  auto is_training =
      read_image_integers(root / "train_test_split.txt", images, "is_training_image", 0, 1);
  auto boxes = read_boxes(root / "bounding_boxes.txt", images);

  std::vector<CubRecord> all(images.ids.size());
  for (size_t i = 0; i < all.size(); ++i) {
    all[i].path = images.paths[i];
    all[i].label = class_ids[i] - 1;
    all[i].box = boxes[i];
  }
  std::vector<std::string> part_names;
  std::vector<std::vector<PartLocation>> parts;
  bool has_parts = read_parts(root, images, part_names, parts);
  if (has_parts)
    for (size_t i = 0; i < all.size(); ++i) all[i].parts = std::move(parts[i]);
  std::vector<std::string> attribute_names;
  bool has_attributes = read_attributes(root, images, all, attribute_names);

  std::vector<CubRecord> records;
  for (size_t pos : split_positions(is_training, split, kFormat))
    records.push_back(std::move(all[pos]));
  return std::make_shared<CubDataset>(std::move(classes), std::move(records), std::move(part_names),
                                      has_parts, std::move(attribute_names), has_attributes);
}

}  // namespace

FINCH_REGISTER_DATASET_FORMAT(DatasetFormat{
    "cub", "CUB-200-2011 (CUB_200_2011/: images.txt, classes, split, boxes, parts, attributes)",
    [](const fs::path&, const YAML::Node&) { return official_splits(); }, open_cub});

}  // namespace finch::data
