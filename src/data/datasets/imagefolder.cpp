// Format "imagefolder": root/<class name>/<image> (torchvision's ImageFolder layout), or
// root/{train,val,test}/<class name>/<image> where each sub-root is a split. Classes are
// sorted by name; with splits, the class list is the union over the splits so that label
// indices agree between them.
#include <algorithm>
#include <map>
#include <set>

#include "finch/core/error.h"
#include "finch/data/formats.h"
#include "finch/io/image.h"

namespace finch::data {

namespace {

namespace fs = std::filesystem;

const std::vector<std::string> kSplitFolders = {"train", "val", "test"};

bool is_hidden(const fs::path& path) { return path.filename().string().rfind('.', 0) == 0; }

bool is_dir(const fs::path& path) {
  std::error_code ec;
  return fs::is_directory(path, ec);
}

// Non-hidden sub-folders of `folder`, sorted by name.
std::vector<std::string> sub_folders(const fs::path& folder) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(folder))
    if (!is_hidden(entry.path()) && is_dir(entry.path()))
      names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// Image files under a class folder (recursively, like torchvision), hidden entries skipped.
std::vector<fs::path> images_under(const fs::path& folder) {
  std::vector<fs::path> files;
  auto options = fs::directory_options::follow_directory_symlink;
  for (auto it = fs::recursive_directory_iterator(folder, options);
       it != fs::recursive_directory_iterator(); ++it) {
    if (is_hidden(it->path())) {
      if (it->is_directory()) it.disable_recursion_pending();
      continue;
    }
    std::error_code ec;
    if (fs::is_regular_file(it->path(), ec) && io::has_image_extension(it->path()))
      files.push_back(it->path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

// root/train holding class folders marks the split layout.
bool has_split_layout(const fs::path& root) {
  return is_dir(root / "train") && !sub_folders(root / "train").empty();
}

struct Layout {
  std::vector<std::string> classes;
  std::map<std::string, fs::path> split_roots;  // split -> folder holding class folders
};

Layout scan_layout(const fs::path& root) {
  if (!is_dir(root)) throw Error("imagefolder root is not a folder: " + root.string());
  Layout layout;
  if (has_split_layout(root)) {
    for (const auto& split : kSplitFolders)
      if (is_dir(root / split)) layout.split_roots[split] = root / split;
  } else {
    layout.split_roots["train"] = root;
  }
  std::set<std::string> classes;
  for (const auto& [split, folder] : layout.split_roots)
    for (const auto& name : sub_folders(folder)) classes.insert(name);
  if (classes.empty())
    throw Error("imagefolder root " + root.string() + " has no class folders (expected " +
                "root/<class>/<image> or root/train/<class>/<image>)");
  layout.classes.assign(classes.begin(), classes.end());
  return layout;
}

class ImageFolderDataset final : public Dataset {
 public:
  ImageFolderDataset(std::vector<std::string> classes, std::vector<fs::path> files,
                     std::vector<int64_t> labels)
      : classes_(std::move(classes)), files_(std::move(files)), labels_(std::move(labels)) {}

  size_t size() const override { return files_.size(); }
  int64_t label(size_t i) const override { return labels_.at(i); }
  cv::Mat load_rgb(size_t i) const override { return io::read_image_rgb(files_.at(i)); }
  std::string describe(size_t i) const override { return files_.at(i).string(); }
  std::optional<std::filesystem::path> file(size_t i) const override { return files_.at(i); }
  const std::vector<std::string>& class_names() const override { return classes_; }

 private:
  std::vector<std::string> classes_;
  std::vector<fs::path> files_;
  std::vector<int64_t> labels_;
};

std::vector<std::string> imagefolder_splits(const fs::path& root, const YAML::Node&) {
  std::vector<std::string> splits;
  for (const auto& [split, folder] : scan_layout(root).split_roots) splits.push_back(split);
  // Report in the usual order rather than alphabetically.
  std::sort(splits.begin(), splits.end(), [](const std::string& a, const std::string& b) {
    auto rank = [](const std::string& s) {
      return std::find(kSplitFolders.begin(), kSplitFolders.end(), s) - kSplitFolders.begin();
    };
    return rank(a) < rank(b);
  });
  return splits;
}

DatasetPtr open_imagefolder(const fs::path& root, const std::string& split, const YAML::Node&) {
  Layout layout = scan_layout(root);
  bool flat = !has_split_layout(root);
  std::string key = flat && split == "all" ? "train" : split;
  if (!layout.split_roots.count(key)) {
    std::string known;
    for (const auto& [name, folder] : layout.split_roots)
      known += (known.empty() ? "" : ", ") + name;
    throw Error("imagefolder dataset at " + root.string() + " has no split '" + split +
                "' (splits: " + known + (flat ? ", all" : "") + ")");
  }

  // A class needs images somewhere, though not in every split.
  std::vector<std::string> empty_classes;
  std::vector<fs::path> files;
  std::vector<int64_t> labels;
  for (size_t c = 0; c < layout.classes.size(); ++c) {
    bool anywhere = false;
    for (const auto& [name, folder] : layout.split_roots) {
      fs::path class_folder = folder / layout.classes[c];
      if (!is_dir(class_folder)) continue;
      std::vector<fs::path> images = images_under(class_folder);
      anywhere = anywhere || !images.empty();
      if (name != key) continue;
      files.insert(files.end(), images.begin(), images.end());
      labels.insert(labels.end(), images.size(), static_cast<int64_t>(c));
    }
    if (!anywhere) empty_classes.push_back(layout.classes[c]);
  }
  if (!empty_classes.empty()) {
    std::string names;
    for (const auto& name : empty_classes) names += (names.empty() ? "" : ", ") + name;
    throw Error("imagefolder dataset at " + root.string() +
                ": class folders without any image: " + names);
  }
  if (files.empty())
    throw Error("imagefolder split '" + split + "' at " + layout.split_roots[key].string() +
                " holds no images");
  return std::make_shared<ImageFolderDataset>(layout.classes, std::move(files), std::move(labels));
}

}  // namespace

FINCH_REGISTER_DATASET_FORMAT(DatasetFormat{
    "imagefolder", "root/<class>/<image>, optionally under root/{train,val,test}/",
    imagefolder_splits, open_imagefolder});

}  // namespace finch::data
