#include "finch/data/from_config.h"

#include <fmt/format.h>

#include <algorithm>
#include <fstream>

#include "finch/core/error.h"
#include "finch/data/box_crop.h"
#include "finch/data/exclude.h"
#include "finch/data/formats.h"
#include "finch/data/sampler.h"
#include "finch/io/image.h"

namespace finch::data {

namespace {

// The samples of some classes, relabelled 0..k-1 in the order the classes are listed
// (`data.classes`: train on the confusable part of a dataset).
class ClassSubsetDataset final : public Dataset {
 public:
  ClassSubsetDataset(DatasetPtr base, const std::vector<std::string>& names,
                     const std::string& where)
      : base_(std::move(base)), names_(names) {
    const auto& all = base_->class_names();
    std::vector<int64_t> new_label(all.size(), -1);
    for (size_t i = 0; i < names.size(); ++i) {
      auto it = std::find(all.begin(), all.end(), names[i]);
      if (it == all.end()) {
        std::string known;
        for (const auto& n : all) known += (known.empty() ? "" : ", ") + n;
        throw Error("data.classes: " + where + " has no class '" + names[i] +
                    "' (classes: " + known + ")");
      }
      if (new_label[it - all.begin()] >= 0)
        throw Error("data.classes lists '" + names[i] + "' twice");
      new_label[it - all.begin()] = static_cast<int64_t>(i);
    }
    for (size_t i = 0; i < base_->size(); ++i) {
      const int64_t label = new_label.at(base_->label(i));
      if (label >= 0) {
        indices_.push_back(i);
        labels_.push_back(label);
      }
    }
  }
  size_t size() const override { return indices_.size(); }
  int64_t label(size_t i) const override { return labels_.at(i); }
  cv::Mat load_rgb(size_t i) const override { return base_->load_rgb(indices_.at(i)); }
  std::string describe(size_t i) const override { return base_->describe(indices_.at(i)); }
  std::optional<std::filesystem::path> file(size_t i) const override {
    return base_->file(indices_.at(i));
  }
  std::optional<Box> box(size_t i) const override { return base_->box(indices_.at(i)); }
  const std::vector<std::string>& class_names() const override { return names_; }

 private:
  DatasetPtr base_;
  std::vector<std::string> names_;
  std::vector<size_t> indices_;
  std::vector<int64_t> labels_;
};

// Every split of a format one after the other (split "all"): the class-disjoint retrieval
// protocols train on all images of the first classes and test on all images of the rest.
class ConcatDataset final : public Dataset {
 public:
  explicit ConcatDataset(std::vector<DatasetPtr> parts) : parts_(std::move(parts)) {
    for (size_t p = 0; p < parts_.size(); ++p) {
      if (parts_[p]->class_names() != parts_[0]->class_names())
        throw Error("split 'all': the format's splits list different classes");
      for (size_t i = 0; i < parts_[p]->size(); ++i) where_.emplace_back(p, i);
    }
  }
  size_t size() const override { return where_.size(); }
  int64_t label(size_t i) const override { return part(i).label(where_.at(i).second); }
  cv::Mat load_rgb(size_t i) const override { return part(i).load_rgb(where_.at(i).second); }
  std::string describe(size_t i) const override { return part(i).describe(where_.at(i).second); }
  std::optional<std::filesystem::path> file(size_t i) const override {
    return part(i).file(where_.at(i).second);
  }
  std::optional<Box> box(size_t i) const override { return part(i).box(where_.at(i).second); }
  const std::vector<std::string>& class_names() const override {
    return parts_.front()->class_names();
  }

 private:
  const Dataset& part(size_t i) const { return *parts_.at(where_.at(i).first); }
  std::vector<DatasetPtr> parts_;
  std::vector<std::pair<size_t, size_t>> where_;
};

// data.max_pixels below io::kDefaultMaxPixels (which every image read enforces): images
// whose header declares more are refused before decoding, so the loader skips and reports
// them like any unreadable image. File-based formats describe a sample by its path; for
// the others (IDX arrays) there is no header to read and nothing to check.
class PixelLimitDataset final : public Dataset {
 public:
  PixelLimitDataset(DatasetPtr base, int64_t max_pixels)
      : base_(std::move(base)), max_pixels_(max_pixels) {}
  size_t size() const override { return base_->size(); }
  int64_t label(size_t i) const override { return base_->label(i); }
  cv::Mat load_rgb(size_t i) const override {
    const std::filesystem::path file = base_->describe(i);
    std::error_code error;
    if (std::filesystem::is_regular_file(file, error)) {
      std::ifstream in(file, std::ios::binary);
      std::string head(1 << 20, '\0');  // JPEG frame headers follow EXIF blocks of <= 64 KiB
      in.read(head.data(), static_cast<std::streamsize>(head.size()));
      head.resize(static_cast<size_t>(in.gcount()));
      io::check_pixel_limit(head, file.string(), max_pixels_);
    }
    return base_->load_rgb(i);
  }
  std::string describe(size_t i) const override { return base_->describe(i); }
  std::optional<std::filesystem::path> file(size_t i) const override { return base_->file(i); }
  std::optional<Box> box(size_t i) const override { return base_->box(i); }
  const std::vector<std::string>& class_names() const override { return base_->class_names(); }

 private:
  DatasetPtr base_;
  int64_t max_pixels_;
};

}  // namespace

DatasetPtr open_split(const Config& config, const std::string& split) {
  const std::string format = config.get<std::string>("data.format");
  const std::string root = config.get<std::string>("data.root");
  DatasetPtr dataset;
  const auto splits = split == "all" ? dataset_format(format).splits(root, config.node("data"))
                                     : std::vector<std::string>{};
  if (split == "all" && std::find(splits.begin(), splits.end(), "all") == splits.end()) {
    std::vector<DatasetPtr> parts;
    for (const auto& s : splits)
      parts.push_back(open_dataset(format, root, s, config.node("data")));
    if (parts.empty()) throw Error(format + " at " + root + " has no splits");
    dataset = std::make_shared<ConcatDataset>(std::move(parts));
  } else {
    dataset = open_dataset(format, root, split, config.node("data"));
  }
  auto classes = config.get<std::vector<std::string>>("data.classes");
  const auto range = config.get<std::vector<int64_t>>("data.class_range");
  if (!range.empty()) {
    if (classes.empty()) classes = dataset->class_names();
    const auto total = static_cast<int64_t>(classes.size());
    if (range.size() != 2 || range[0] < 0 || range[0] >= range[1] || range[1] > total)
      throw Error(fmt::format(
          "data.class_range must be [begin, end) with 0 <= begin < end <= {} (the classes of {} "
          "split '{}'), got [{}]",
          total, format, split, fmt::join(range, ", ")));
    classes = std::vector<std::string>(classes.begin() + range[0], classes.begin() + range[1]);
  }
  if (!classes.empty()) {
    dataset =
        std::make_shared<ClassSubsetDataset>(dataset, classes, format + " split '" + split + "'");
  }
  if (const auto exclude = config.get<std::string>("data.exclude"); !exclude.empty())
    dataset = exclude_listed(std::move(dataset), read_exclusion_list(exclude), root);
  const auto max_pixels = config.get<int64_t>("data.max_pixels");
  if (max_pixels < 1 || max_pixels > io::kDefaultMaxPixels)
    throw Error(
        fmt::format("data.max_pixels must be in [1, {}] (the limit every image read "
                    "applies), got {}",
                    io::kDefaultMaxPixels, max_pixels));
  if (max_pixels < io::kDefaultMaxPixels)
    dataset = std::make_shared<PixelLimitDataset>(dataset, max_pixels);
  if (!config.get<bool>("data.crop_to_box")) return dataset;
  // Cropped here, below the carve of a validation split, so train, val and test all see the
  // object crop the same way.
  return std::make_shared<BoxCropDataset>(dataset, config.get<float>("data.box_margin"),
                                          format + " at " + root + ", split '" + split + "'");
}

TrainValData open_train_val(const Config& config) {
  const std::string format = config.get<std::string>("data.format");
  const std::string root = config.get<std::string>("data.root");
  const YAML::Node options = config.node("data");
  TrainValData out;
  out.train = open_split(config, config.get<std::string>("data.train_split"));
  std::string val_split = config.get<std::string>("data.val_split");
  if (val_split.empty()) {
    auto splits = dataset_format(format).splits(root, options);
    if (std::find(splits.begin(), splits.end(), "val") != splits.end()) val_split = "val";
  }
  if (!val_split.empty()) {
    out.val = open_split(config, val_split);
    out.val_source = "split '" + val_split + "'";
    return out;
  }
  const double fraction = config.get<double>("data.val_fraction");
  if (fraction < 0 || fraction >= 1) throw Error("data.val_fraction must be in [0, 1)");
  if (fraction == 0) {
    out.val_source = "none (data.val_fraction is 0)";
    return out;
  }
  const uint64_t seed = config.get<uint64_t>("seed");
  auto [train_idx, val_idx] = stratified_split(out.train->labels(), fraction, seed);
  out.val = std::make_shared<SubsetDataset>(out.train, std::move(val_idx));
  out.train = std::make_shared<SubsetDataset>(out.train, std::move(train_idx));
  out.val_source = fmt::format("carved {:.0f}% of '{}' (stratified, seed {})", 100 * fraction,
                               config.get<std::string>("data.train_split"), seed);
  return out;
}

EvalSplit open_eval_split(const Config& config, const std::string& split) {
  if (split == "val") {
    const auto splits = dataset_format(config.get<std::string>("data.format"))
                            .splits(config.get<std::string>("data.root"), config.node("data"));
    if (std::find(splits.begin(), splits.end(), "val") == splits.end()) {
      TrainValData carved = open_train_val(config);
      if (!carved.val)
        throw Error(
            "this format ships no val split and data.val_fraction is 0: pass the training "
            "run's fraction, e.g. --option val_fraction=0.1");
      return {carved.val, carved.val_source};
    }
  }
  return {open_split(config, split), "split '" + split + "'"};
}

Pipeline train_pipeline(const Config& config) {
  return build_pipeline(config.node("data.train_transforms"),
                        config.get<std::vector<float>>("data.mean"),
                        config.get<std::vector<float>>("data.std"));
}

Pipeline eval_pipeline(const Config& config) {
  return build_pipeline(config.node("data.eval_transforms"),
                        config.get<std::vector<float>>("data.mean"),
                        config.get<std::vector<float>>("data.std"));
}

LoaderOptions loader_options(const Config& config, bool training) {
  LoaderOptions options;
  options.batch_size = config.get<int64_t>(training ? "train.batch_size" : "train.eval_batch_size");
  options.shuffle = training;
  options.drop_last = training && config.get<bool>("train.drop_last");
  options.workers = config.get<int>("data.workers");
  options.prefetch = config.get<int>("data.prefetch");
  options.strict = config.get<bool>("data.strict");
  options.seed = config.get<uint64_t>("seed");
  return options;
}

LoaderOptions train_loader_options(const Config& config, const DatasetPtr& train) {
  LoaderOptions options = loader_options(config, true);
  const std::string sampler = config.get<std::string>("data.sampler");
  if (sampler == "random") return options;
  if (sampler == "balanced") {
    const double power = config.get<double>("data.balance_power");
    balanced_order(train->labels(), power, 0, 0);  // checks the power before training starts
    options.order = [labels = train->labels(), power, seed = options.seed](int64_t epoch) {
      return balanced_order(labels, power, seed, epoch);
    };
    return options;
  }
  if (sampler != "pk")
    throw Error("data.sampler must be random, balanced or pk, got '" + sampler + "'");
  const int64_t per_class = config.get<int64_t>("data.samples_per_class");
  if (per_class < 1 || options.batch_size % per_class != 0)
    throw Error("data.sampler pk: train.batch_size (" + std::to_string(options.batch_size) +
                ") must be a multiple of data.samples_per_class (" + std::to_string(per_class) +
                ")");
  options.drop_last = true;
  options.order = [labels = train->labels(), classes = options.batch_size / per_class, per_class,
                   seed = options.seed](int64_t epoch) {
    return pk_order(labels, classes, per_class, seed, epoch);
  };
  return options;
}

}  // namespace finch::data
