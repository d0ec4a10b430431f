#pragma once
// Opening datasets, pipelines and loaders from a run configuration (the `data` section).
#include <string>

#include "finch/core/config.h"
#include "finch/data/dataset.h"
#include "finch/data/loader.h"
#include "finch/data/transforms.h"

namespace finch::data {

struct TrainValData {
  DatasetPtr train, val;   // val may be null when data.val_fraction is 0 and none ships
  std::string val_source;  // "split 'val'" or "carved 10% of 'train' (stratified, seed 0)"
};

/// Opens data.train_split and the validation data: the format's own val split when it has
/// one (or data.val_split names one), else a stratified carve of data.val_fraction.
TrainValData open_train_val(const Config& config);

/// Opens one named split of the configured dataset, cropped to its object boxes when
/// data.crop_to_box is true (BoxCropDataset with data.box_margin).
DatasetPtr open_split(const Config& config, const std::string& split);

struct EvalSplit {
  DatasetPtr dataset;
  std::string source;  // "split 'test'" or "carved 10% of 'train' (stratified, seed 0)"
};

/// Opens a split to evaluate on: the named split, or for "val" on a format that ships none,
/// the validation part open_train_val carves from data.train_split (data.val_fraction and the
/// top-level seed must be the training run's to get the same images).
EvalSplit open_eval_split(const Config& config, const std::string& split);

Pipeline train_pipeline(const Config& config);
Pipeline eval_pipeline(const Config& config);

/// Loader options for training (shuffled, drop_last per config) or evaluation.
LoaderOptions loader_options(const Config& config, bool training);

/// Training loader options for `train` with data.sampler applied (pk: class-balanced batches
/// of data.samples_per_class samples of train.batch_size / data.samples_per_class classes).
LoaderOptions train_loader_options(const Config& config, const DatasetPtr& train);

}  // namespace finch::data
