#include "finch/data/from_config.h"

#include <fmt/format.h>

#include <algorithm>

#include "finch/core/error.h"
#include "finch/data/box_crop.h"
#include "finch/data/formats.h"

namespace finch::data {

DatasetPtr open_split(const Config& config, const std::string& split) {
  const std::string format = config.get<std::string>("data.format");
  const std::string root = config.get<std::string>("data.root");
  DatasetPtr dataset = open_dataset(format, root, split, config.node("data"));
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

}  // namespace finch::data
