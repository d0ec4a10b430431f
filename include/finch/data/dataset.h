#pragma once
// The one dataset interface every format implements: an indexable list of labelled
// images. Labels and names are cheap (kept in memory); images are decoded on demand.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <opencv2/core.hpp>
#include <optional>
#include <string>
#include <vector>

namespace finch::data {

/// Object box in pixels of the decoded image, 0-based, top-left corner + size.
struct Box {
  float x = 0, y = 0, width = 0, height = 0;
};

class Dataset {
 public:
  virtual ~Dataset() = default;

  virtual size_t size() const = 0;
  /// Class index in [0, num_classes) of sample i; never decodes.
  virtual int64_t label(size_t i) const = 0;
  /// Decoded HxWx3 uint8 RGB image of sample i. Throws finch::Error (naming the file)
  /// when the image is missing or corrupt; the loader decides whether to skip it.
  virtual cv::Mat load_rgb(size_t i) const = 0;
  /// Human-readable origin of sample i for messages and predictions (a path, "file#index").
  virtual std::string describe(size_t i) const = 0;
  /// Object box of sample i, if the format has one.
  virtual std::optional<Box> box(size_t i) const { return std::nullopt; }
  /// The image file of sample i, for formats that keep one file per image (nullopt for
  /// formats that pack images, such as IDX). The data doctor reads its bytes.
  virtual std::optional<std::filesystem::path> file(size_t i) const { return std::nullopt; }

  /// Class names; index = class index.
  virtual const std::vector<std::string>& class_names() const = 0;
  size_t num_classes() const { return class_names().size(); }

  /// All labels (size() entries).
  std::vector<int64_t> labels() const;
};

using DatasetPtr = std::shared_ptr<const Dataset>;

/// A view of some samples of another dataset (a carved validation split, a subset).
class SubsetDataset final : public Dataset {
 public:
  SubsetDataset(DatasetPtr base, std::vector<size_t> indices);
  size_t size() const override { return indices_.size(); }
  int64_t label(size_t i) const override { return base_->label(indices_.at(i)); }
  cv::Mat load_rgb(size_t i) const override { return base_->load_rgb(indices_.at(i)); }
  std::string describe(size_t i) const override { return base_->describe(indices_.at(i)); }
  std::optional<Box> box(size_t i) const override { return base_->box(indices_.at(i)); }
  std::optional<std::filesystem::path> file(size_t i) const override {
    return base_->file(indices_.at(i));
  }
  const std::vector<std::string>& class_names() const override { return base_->class_names(); }

 private:
  DatasetPtr base_;
  std::vector<size_t> indices_;
};

/// Deterministic stratified split of sample indices: about `fraction` of every class
/// (at least one sample of each class with >= 2 samples) goes to the second list.
/// Depends only on (labels, fraction, seed).
std::pair<std::vector<size_t>, std::vector<size_t>> stratified_split(
    const std::vector<int64_t>& labels, double fraction, uint64_t seed);

}  // namespace finch::data
