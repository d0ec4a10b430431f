// Format "cars": Stanford Cars (196 classes, 8,144 train / 8,041 test) in either layout that
// circulates (the original URL is dead, so users bring a mirror's copy). root is the folder
// holding the images folders; the layout is detected from the files:
//   devkit:   cars_meta.mat (`class_names`), cars_train_annos.mat and
//             cars_test_annos_withlabels.mat (struct array `annotations` with fields bbox_x1,
//             bbox_y1, bbox_x2, bbox_y2, class, fname), at the root or under devkit/; images
//             cars_train/<fname>, cars_test/<fname>. The devkit's own cars_test_annos.mat has
//             no labels: the test split needs cars_test_annos_withlabels.mat.
//   combined: cars_annos.mat (`annotations` with relative_im_path, bbox_x1..bbox_y2, class,
//             test; `class_names`); images root/<relative_im_path> (car_ims/000001.jpg).
// When both are present the combined file wins if car_ims/ exists. `class` is 1-based (class
// c is index c - 1, named class_names{c}). The devkit documents the boxes in MATLAB pixel
// indices: 1-based, both corners inclusive; they become 0-based x, y, width = x2 - x1 + 1.
// Splits train, test. All .mat files are read with libmatio (v5 or v7.3).
#include <algorithm>

#include "cub_style.h"
#include "finch/core/error.h"
#include "finch/data/formats.h"
#include "finch/io/mat.h"
#include "record_dataset.h"

namespace finch::data {

namespace {

namespace fs = std::filesystem;
using cub_style::file_exists;

const char* const kCarsFormat = "cars";
const char* const kLayouts =
    "expected either the devkit layout (cars_meta.mat, cars_train_annos.mat and "
    "cars_test_annos_withlabels.mat at the root or under devkit/, images in cars_train/ and "
    "cars_test/) or the combined layout (cars_annos.mat and car_ims/)";

// The devkit .mat files sit under devkit/ in the official archive and at the root in many
// mirrors.
fs::path find_devkit_file(const fs::path& root, const std::string& name) {
  for (const fs::path& p : {root / name, root / "devkit" / name})
    if (file_exists(p)) return p;
  return {};
}

bool is_combined(const fs::path& root) {
  if (!file_exists(root / "cars_annos.mat")) return false;
  std::error_code ec;
  return fs::is_directory(root / "car_ims", ec) || find_devkit_file(root, "cars_meta.mat").empty();
}

std::vector<std::string> read_class_names(const io::MatFile& file) {
  std::vector<std::string> names = file.read("class_names").strings();
  if (names.empty()) throw Error(file.path().string() + ": variable 'class_names' is empty");
  return names;
}

// The class index of `annotations(i).class`, checked against the class list.
int64_t class_index(const io::MatVar& annotations, size_t i, size_t num_classes,
                    const fs::path& classes_file) {
  const io::MatVar field = annotations.field(i, "class");
  const double c = field.number();
  if (c != std::floor(c) || c < 1 || c > static_cast<double>(num_classes))
    throw Error(field.context() + ": class " + number_text(c) + " is outside 1.." +
                std::to_string(num_classes) + " (the classes of " + classes_file.string() + ")");
  return static_cast<int64_t>(c) - 1;
}

std::optional<Box> read_box(const io::MatVar& annotations, size_t i) {
  const double x1 = annotations.field(i, "bbox_x1").number();
  const double y1 = annotations.field(i, "bbox_y1").number();
  const double x2 = annotations.field(i, "bbox_x2").number();
  const double y2 = annotations.field(i, "bbox_y2").number();
  auto box = box_from_inclusive_corners(x1, y1, x2, y2);
  if (!box)
    throw Error(annotations.context() + ", element " + std::to_string(i + 1) +
                ": box corners must satisfy bbox_x1 <= bbox_x2 and bbox_y1 <= bbox_y2");
  return box;
}

DatasetPtr open_combined(const fs::path& root, const std::string& split) {
  const fs::path file = root / "cars_annos.mat";
  io::MatFile mat(file);
  std::vector<std::string> classes = read_class_names(mat);
  io::MatVar annotations = mat.read("annotations");
  annotations.require_fields(
      {"relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "test"});
  const double wanted = split == "test" ? 1 : 0;
  std::vector<ImageRecord> records;
  for (size_t i = 0; i < annotations.size(); ++i) {
    const io::MatVar test = annotations.field(i, "test");
    const double flag = test.number();
    if (flag != 0 && flag != 1) throw Error(test.context() + ": expected 0 (train) or 1 (test)");
    if (flag != wanted) continue;
    ImageRecord r;
    r.path = root / fs::path(annotations.field(i, "relative_im_path").text());
    r.label = class_index(annotations, i, classes.size(), file);
    r.box = read_box(annotations, i);
    records.push_back(std::move(r));
  }
  if (records.empty()) throw Error(file.string() + " lists no " + split + " images");
  return std::make_shared<RecordDataset>(std::move(classes), std::move(records));
}

DatasetPtr open_devkit(const fs::path& root, const std::string& split) {
  const fs::path meta = find_devkit_file(root, "cars_meta.mat");
  if (meta.empty())
    throw Error(std::string(kCarsFormat) + ": cars_meta.mat not found in " + root.string() + " or " +
                (root / "devkit").string() + "; " + kLayouts);
  const std::string annos_name =
      split == "train" ? "cars_train_annos.mat" : "cars_test_annos_withlabels.mat";
  const fs::path annos = find_devkit_file(root, annos_name);
  if (annos.empty()) {
    std::string message = std::string(kCarsFormat) + ": " + annos_name + " not found in " +
                          root.string() + " or " + (root / "devkit").string();
    if (split == "test")
      message +=
          " (the devkit's cars_test_annos.mat has no labels; the labelled test annotations "
          "were released separately as cars_test_annos_withlabels.mat)";
    throw Error(message);
  }
  std::vector<std::string> classes = read_class_names(io::MatFile(meta));
  io::MatFile mat(annos);
  io::MatVar annotations = mat.read("annotations");
  annotations.require_fields({"bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname"});
  const fs::path images = root / (split == "train" ? "cars_train" : "cars_test");
  std::vector<ImageRecord> records;
  for (size_t i = 0; i < annotations.size(); ++i) {
    ImageRecord r;
    r.path = images / fs::path(annotations.field(i, "fname").text());
    r.label = class_index(annotations, i, classes.size(), meta);
    r.box = read_box(annotations, i);
    records.push_back(std::move(r));
  }
  if (records.empty()) throw Error(annos.string() + ": variable 'annotations' is empty");
  return std::make_shared<RecordDataset>(std::move(classes), std::move(records));
}

std::vector<std::string> cars_splits(const fs::path& root, const YAML::Node&) {
  if (is_combined(root)) return {"train", "test"};
  if (find_devkit_file(root, "cars_meta.mat").empty() ||
      find_devkit_file(root, "cars_train_annos.mat").empty())
    throw Error(std::string(kCarsFormat) + ": no Stanford Cars annotations in " + root.string() + "; " +
                kLayouts);
  if (find_devkit_file(root, "cars_test_annos_withlabels.mat").empty()) return {"train"};
  return {"train", "test"};
}

DatasetPtr open_cars(const fs::path& root, const std::string& split, const YAML::Node&) {
  if (split != "train" && split != "test")
    throw Error(std::string(kCarsFormat) + " has no split '" + split + "' (splits: train, test)");
  if (is_combined(root)) return open_combined(root, split);
  if (find_devkit_file(root, "cars_meta.mat").empty() &&
      find_devkit_file(root, "cars_train_annos.mat").empty())
    throw Error(std::string(kCarsFormat) + ": no Stanford Cars annotations in " + root.string() + "; " +
                kLayouts);
  return open_devkit(root, split);
}

}  // namespace

FINCH_REGISTER_DATASET_FORMAT(DatasetFormat{
    "cars", "Stanford Cars (devkit layout or cars_annos.mat + car_ims/)", cars_splits, open_cars});

}  // namespace finch::data
