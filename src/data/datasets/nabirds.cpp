// Format "nabirds": NABirds as it ships (root = the nabirds folder). The same id files as
// CUB-200-2011 (read by cub_style.h), with image ids that are UUIDs, class names with
// spaces, and hierarchy.txt (`<child_id> <parent_id>`). Class ids number every node of the
// taxonomy, so class indices are 0..N-1 over the ids that label images (555 leaves in the
// official release), sorted by id, over all images so that both splits agree.
#include "finch/data/datasets/nabirds.h"

#include <set>

#include "cub_style.h"
#include "finch/core/error.h"
#include "finch/data/formats.h"

namespace finch::data {

NABirdsDataset::NABirdsDataset(std::vector<std::string> classes, std::vector<int64_t> original_ids,
                               std::vector<int64_t> parent_ids, std::vector<CubRecord> records,
                               std::vector<std::string> part_names, bool has_parts)
    : CubStyleDataset(std::move(classes), std::move(records), std::move(part_names), has_parts),
      original_ids_(std::move(original_ids)),
      parent_ids_(std::move(parent_ids)) {}

namespace {

namespace fs = std::filesystem;
using namespace cub_style;

const char* const kNabirdsFormat = "nabirds";

// hierarchy.txt: child id -> parent id; both must be classes.txt ids.
std::map<int64_t, int64_t> read_hierarchy(const fs::path& file,
                                          const std::map<int64_t, std::string>& classes,
                                          const fs::path& classes_file) {
  std::map<int64_t, int64_t> parent;
  for_each_line(file, [&](const Line& line) {
    line.expect_fields(2, 2, "<child_id> <parent_id>");
    int64_t child = line.integer(0, "child_id"), up = line.integer(1, "parent_id");
    for (int64_t id : {child, up})
      if (!classes.count(id))
        line.fail("class id " + std::to_string(id) + " is not listed in " + classes_file.string());
    if (!parent.emplace(child, up).second)
      line.fail("class id " + std::to_string(child) + " has two parents");
  });
  return parent;
}

DatasetPtr open_nabirds(const fs::path& root, const std::string& split, const YAML::Node&) {
  for (const char* name : {"images.txt", "image_class_labels.txt", "train_test_split.txt",
                           "classes.txt", "bounding_boxes.txt", "hierarchy.txt"})
    require_file(root / name, kNabirdsFormat);
  ImageList images = read_image_list(root);
  const fs::path classes_file = root / "classes.txt";
  auto names = read_id_names(classes_file);
  auto class_ids = read_class_ids(root / "image_class_labels.txt", images, names, classes_file);
  auto parents = read_hierarchy(root / "hierarchy.txt", names, classes_file);
  auto is_training =
      read_image_integers(root / "train_test_split.txt", images, "is_training_image", 0, 1);
  auto boxes = read_boxes(root / "bounding_boxes.txt", images);

  const std::set<int64_t> used(class_ids.begin(), class_ids.end());
  std::map<int64_t, int64_t> index_of;
  std::vector<std::string> classes;
  std::vector<int64_t> original_ids, parent_ids;
  for (int64_t id : used) {
    index_of[id] = static_cast<int64_t>(classes.size());
    classes.push_back(names.at(id));
    original_ids.push_back(id);
    auto it = parents.find(id);
    parent_ids.push_back(it == parents.end() ? -1 : it->second);
  }

  std::vector<std::string> part_names;
  std::vector<std::vector<PartLocation>> parts;
  bool has_parts = read_parts(root, images, part_names, parts);
  std::vector<CubRecord> records;
  for (size_t pos : split_positions(is_training, split, kNabirdsFormat)) {
    CubRecord r;
    r.path = images.paths[pos];
    r.label = index_of.at(class_ids[pos]);
    r.box = boxes[pos];
    if (has_parts) r.parts = std::move(parts[pos]);
    records.push_back(std::move(r));
  }
  return std::make_shared<NABirdsDataset>(std::move(classes), std::move(original_ids),
                                          std::move(parent_ids), std::move(records),
                                          std::move(part_names), has_parts);
}

}  // namespace

FINCH_REGISTER_DATASET_FORMAT(DatasetFormat{
    "nabirds", "NABirds (nabirds/: CUB-style files + hierarchy.txt; class ids remapped)",
    [](const fs::path&, const YAML::Node&) { return official_splits(); }, open_nabirds});

}  // namespace finch::data
