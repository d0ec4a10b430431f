// Format "flowers102": Oxford Flowers-102 (102 classes; train 1,020 / val 1,020 / test 6,149)
// as it ships (root = the folder holding imagelabels.mat, setid.mat and jpg/).
// imagelabels.mat: `labels` (1..102), element k is the label of image id k + 1;
// setid.mat: `trnid`, `valid`, `tstid`, 1-based image ids; images jpg/image_%05d.jpg.
// Splits train, val, test (the official val split is used as is, nothing is carved).
// Image id n has class index labels[n - 1] - 1: both the id and the label are 1-based, and
// shifting only one of them is the off-by-one torchvision once shipped (pytorch/vision#5766).
// The archive has no class names; classes are named class_001 .. class_102 by label number.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "cub_style.h"
#include "finch/core/error.h"
#include "finch/data/formats.h"
#include "finch/io/mat.h"
#include "record_dataset.h"

namespace finch::data {

namespace {

namespace fs = std::filesystem;
using cub_style::require_file;

const char* const kFlowersFormat = "flowers102";
constexpr int kMaxClasses = 102;

// setid.mat variable of each split.
const char* id_variable(const std::string& split) {
  if (split == "train") return "trnid";
  if (split == "val") return "valid";
  if (split == "test") return "tstid";
  throw Error(std::string(kFlowersFormat) + " has no split '" + split + "' (splits: train, val, test)");
}

std::string image_name(int64_t id) {
  char name[32];
  std::snprintf(name, sizeof name, "image_%05lld.jpg", static_cast<long long>(id));
  return name;
}

std::vector<std::string> flowers_splits(const fs::path& root, const YAML::Node&) {
  require_file(root / "setid.mat", kFlowersFormat);
  return {"train", "val", "test"};
}

DatasetPtr open_flowers(const fs::path& root, const std::string& split, const YAML::Node&) {
  const char* variable = id_variable(split);
  const fs::path labels_file = root / "imagelabels.mat", setid_file = root / "setid.mat";
  require_file(labels_file, kFlowersFormat);
  require_file(setid_file, kFlowersFormat);

  const io::MatVar labels_var = io::MatFile(labels_file).read("labels");
  const std::vector<double> labels = labels_var.numbers();
  if (labels.empty()) throw Error(labels_var.context() + " is empty");
  int num_classes = 0;
  for (size_t k = 0; k < labels.size(); ++k) {
    const double v = labels[k];
    if (v != std::floor(v) || v < 1 || v > kMaxClasses)
      throw Error(labels_var.context() + ": label " + number_text(v) + " of image id " +
                  std::to_string(k + 1) + " is outside 1.." + std::to_string(kMaxClasses));
    num_classes = std::max(num_classes, static_cast<int>(v));
  }
  // Every class up to the largest label must label some image (an empty class would be a
  // class the model can never learn).
  std::vector<bool> used(num_classes, false);
  for (double v : labels) used[static_cast<int>(v) - 1] = true;
  for (int c = 0; c < num_classes; ++c)
    if (!used[c])
      throw Error(labels_var.context() + ": no image has label " + std::to_string(c + 1) +
                  " (labels must be 1.." + std::to_string(num_classes) + " with no empty class)");
  std::vector<std::string> classes;
  for (int c = 1; c <= num_classes; ++c) {
    char name[32];
    std::snprintf(name, sizeof name, "class_%03d", c);
    classes.push_back(name);
  }

  const io::MatVar ids_var = io::MatFile(setid_file).read(variable);
  std::vector<ImageRecord> records;
  for (double id : ids_var.numbers()) {
    if (id != std::floor(id) || id < 1 || id > static_cast<double>(labels.size()))
      throw Error(ids_var.context() + ": image id " + number_text(id) + " is outside 1.." +
                  std::to_string(labels.size()) + " (the images labelled in " +
                  labels_file.string() + ")");
    const auto n = static_cast<int64_t>(id);
    ImageRecord r;
    r.path = root / "jpg" / image_name(n);
    r.label = static_cast<int64_t>(labels[n - 1]) - 1;
    records.push_back(std::move(r));
  }
  if (records.empty()) throw Error(ids_var.context() + " lists no images");
  return std::make_shared<RecordDataset>(std::move(classes), std::move(records));
}

}  // namespace

FINCH_REGISTER_DATASET_FORMAT(DatasetFormat{"flowers102",
                                            "Oxford Flowers-102 (imagelabels.mat, setid.mat, jpg/)",
                                            flowers_splits, open_flowers});

}  // namespace finch::data
