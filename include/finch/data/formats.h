#pragma once
// The dataset format registry. Each format lives in its own file under
// src/data/datasets/ and registers itself with FINCH_REGISTER_DATASET_FORMAT; adding a
// benchmark format is one new file.
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "finch/core/registry.h"
#include "finch/data/dataset.h"

namespace finch::data {

struct DatasetFormat {
  std::string name;         // the `data.format` / `--dataset` value, e.g. "idx"
  std::string description;  // one line for --help and errors
  /// Splits that exist at `root` (e.g. {"train", "test"}); "val" present means the format
  /// ships a validation split and none is carved.
  std::function<std::vector<std::string>(const std::filesystem::path& root,
                                         const YAML::Node& options)>
      splits;
  /// Opens one split. `options` is the `data` section of the config (format-specific keys
  /// live there). Throws finch::Error for a bad root, a bad line or an unknown split.
  std::function<DatasetPtr(const std::filesystem::path& root, const std::string& split,
                           const YAML::Node& options)>
      open;
  /// The `data` keys this format owns, with their defaults (e.g. aircraft's `level`).
  std::vector<OwnedOptions> options;
};

/// Registers a format in the format registry (core/registry.h: a taken name stops the
/// program at load time). Returns true (for static init).
bool register_dataset_format(DatasetFormat format);

/// The registered format `name`; throws finch::Error listing the known formats otherwise.
const DatasetFormat& dataset_format(const std::string& name);

/// Names of all registered formats, sorted.
std::vector<std::string> dataset_format_names();

/// Opens `split` of `format` at `root` (shortcut for dataset_format(format).open(...)).
DatasetPtr open_dataset(const std::string& format, const std::filesystem::path& root,
                        const std::string& split, const YAML::Node& options = YAML::Node());

}  // namespace finch::data

#define FINCH_CONCAT_INNER(a, b) a##b
#define FINCH_CONCAT(a, b) FINCH_CONCAT_INNER(a, b)
/// Registers a DatasetFormat at library load time.
#define FINCH_REGISTER_DATASET_FORMAT(...)                                     \
  static const bool FINCH_CONCAT(finch_dataset_format_registered_, __LINE__) = \
      ::finch::data::register_dataset_format(__VA_ARGS__)
