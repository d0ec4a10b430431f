// Format "idx": MNIST-style IDX files, e.g. Fashion-MNIST as Debian ships it in
// /usr/share/datasets/fashion-mnist: {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz].
#include "finch/io/idx.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <opencv2/imgproc.hpp>

#include "finch/core/error.h"
#include "finch/data/formats.h"

namespace finch::data {

namespace {

namespace fs = std::filesystem;

const std::vector<std::string> kFashionClasses = {"T-shirt/top", "Trouser",   "Pullover", "Dress",
                                                  "Coat",        "Sandal",    "Shirt",    "Sneaker",
                                                  "Bag",         "Ankle boot"};

// The file for `stem` (e.g. "train-images-idx3-ubyte"), plain or gzipped; empty if neither.
fs::path find_file(const fs::path& root, const std::string& stem) {
  for (const char* suffix : {"", ".gz"}) {
    fs::path candidate = root / (stem + suffix);
    std::error_code ec;
    if (fs::is_regular_file(candidate, ec)) return candidate;
  }
  return {};
}

// "train" -> train-*, "test" -> t10k-* (the names the MNIST family ships with).
std::string file_prefix(const std::string& split) { return split == "test" ? "t10k" : split; }

std::vector<std::string> idx_splits(const fs::path& root, const YAML::Node&) {
  std::vector<std::string> splits;
  for (const char* split : {"train", "test"}) {
    std::string prefix = file_prefix(split);
    if (!find_file(root, prefix + "-images-idx3-ubyte").empty() &&
        !find_file(root, prefix + "-labels-idx1-ubyte").empty())
      splits.push_back(split);
  }
  return splits;
}

std::vector<std::string> class_names_for(const fs::path& root) {
  fs::path classes_file = root / "classes.txt";
  std::error_code ec;
  if (fs::is_regular_file(classes_file, ec)) {
    std::ifstream in(classes_file);
    std::vector<std::string> names;
    std::string line;
    while (std::getline(in, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      names.push_back(line);
    }
    while (!names.empty() && names.back().empty()) names.pop_back();
    for (size_t i = 0; i < names.size(); ++i)
      if (names[i].empty())
        throw line_error(classes_file.string(), i + 1, "empty class name", names[i]);
    if (names.empty()) throw Error("no class names in " + classes_file.string());
    return names;
  }
  fs::path folder = fs::absolute(root).lexically_normal();
  if (folder.filename().empty()) folder = folder.parent_path();  // "root/" has no filename
  std::string name = folder.filename().string();
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (name.find("fashion") != std::string::npos) return kFashionClasses;
  std::vector<std::string> digits;
  for (int d = 0; d < 10; ++d) digits.push_back(std::to_string(d));
  return digits;
}

class IdxDataset final : public Dataset {
 public:
  IdxDataset(const fs::path& images_file, const fs::path& labels_file,
             std::vector<std::string> class_names)
      : images_file_(images_file.string()), class_names_(std::move(class_names)) {
    io::IdxArray images = io::read_idx(images_file);
    io::IdxArray labels = io::read_idx(labels_file);
    if (images.shape.size() != 3)
      throw Error("IDX images file " + images_file_ + " has " +
                  std::to_string(images.shape.size()) + " dimensions; expected 3 (N, H, W)");
    if (labels.shape.size() != 1)
      throw Error("IDX labels file " + labels_file.string() + " has " +
                  std::to_string(labels.shape.size()) + " dimensions; expected 1 (N)");
    if (labels.shape[0] != images.shape[0])
      throw Error("IDX labels file " + labels_file.string() + " has " +
                  std::to_string(labels.shape[0]) + " labels but " + images_file_ + " has " +
                  std::to_string(images.shape[0]) + " images");
    for (size_t i = 0; i < labels.data.size(); ++i)
      if (labels.data[i] >= class_names_.size())
        throw Error("IDX labels file " + labels_file.string() + ": label " +
                    std::to_string(labels.data[i]) + " of sample " + std::to_string(i) +
                    " is out of range for " + std::to_string(class_names_.size()) + " classes");
    height_ = static_cast<int>(images.shape[1]);
    width_ = static_cast<int>(images.shape[2]);
    pixels_ = std::move(images.data);
    labels_ = std::move(labels.data);
  }

  size_t size() const override { return labels_.size(); }
  int64_t label(size_t i) const override { return labels_.at(i); }
  cv::Mat load_rgb(size_t i) const override {
    if (i >= size()) throw Error("sample " + std::to_string(i) + " out of range: " + images_file_);
    size_t offset = i * static_cast<size_t>(height_) * static_cast<size_t>(width_);
    cv::Mat grey(height_, width_, CV_8UC1, const_cast<uint8_t*>(pixels_.data() + offset));
    cv::Mat rgb;
    cv::cvtColor(grey, rgb, cv::COLOR_GRAY2RGB);
    return rgb;
  }
  std::string describe(size_t i) const override { return images_file_ + "#" + std::to_string(i); }
  const std::vector<std::string>& class_names() const override { return class_names_; }

 private:
  std::string images_file_;
  std::vector<std::string> class_names_;
  int height_ = 0, width_ = 0;
  std::vector<uint8_t> pixels_;  // N x H x W, row-major
  std::vector<uint8_t> labels_;
};

DatasetPtr open_idx(const fs::path& root, const std::string& split, const YAML::Node& options) {
  std::error_code ec;
  if (!fs::is_directory(root, ec))
    throw Error("idx dataset root is not a folder: " + root.string());
  if (split != "train" && split != "test")
    throw Error("idx dataset has no split '" + split + "' (splits: train, test)");
  std::string prefix = file_prefix(split);
  fs::path images = find_file(root, prefix + "-images-idx3-ubyte");
  fs::path labels = find_file(root, prefix + "-labels-idx1-ubyte");
  if (images.empty() || labels.empty())
    throw Error("idx dataset at " + root.string() + " has no " + split + " split: expected " +
                prefix + "-images-idx3-ubyte[.gz] and " + prefix + "-labels-idx1-ubyte[.gz]");
  return std::make_shared<IdxDataset>(images, labels, class_names_for(root));
}

}  // namespace

FINCH_REGISTER_DATASET_FORMAT(DatasetFormat{
    "idx", "MNIST-style IDX files {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]", idx_splits,
    open_idx});

}  // namespace finch::data
