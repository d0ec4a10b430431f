#pragma once
// `finch data info`: what a dataset root holds (classes, images per split and per class,
// image sizes, missing and unreadable files, boxes) and whether the counts are the official
// ones of the benchmark, so a bad download or a wrong root shows before training.
#include <cstddef>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "finch/core/config.h"
#include "finch/core/progress.h"

namespace finch::data {

/// min / median / max of some counts or sizes (all 0 when there are none).
struct Spread {
  int64_t min = 0, median = 0, max = 0;
};

struct SplitInfo {
  std::string name;
  size_t images = 0;
  Spread per_class;                   // images per class, over every class of the class list
  size_t empty_classes = 0;           // classes with no image in this split
  size_t with_boxes = 0;              // samples that have an object box
  size_t missing = 0;                 // samples whose file does not exist
  size_t unreadable = 0;              // samples that fail to decode (only with check_images)
  std::vector<std::string> problems;  // the first few missing / unreadable files, with why
  std::optional<size_t> official;     // the benchmark's published count, if known
};

struct DatasetInfo {
  std::string format, root;
  size_t num_classes = 0;
  std::optional<size_t> official_classes;
  std::vector<SplitInfo> splits;
  bool checked_images = false;  // every image was decoded
  size_t sized = 0;             // images whose size was measured
  std::string size_source;      // how: "file headers of every 12th image, 983 of 11788 images"
  Spread width, height;
  /// True when every known official count (classes, images per split) matches; nullopt when
  /// the format has no official counts (custom data).
  std::optional<bool> matches_official;
};

struct InfoOptions {
  bool check_images = false;  // decode every image (slow; reports unreadable files)
  size_t size_sample = 1000;  // without check_images: images whose header size is read (0: none)
  ProgressStyle progress = ProgressStyle::kAuto;
};

/// Opens every split of the configured dataset (data.format, data.root and the format's
/// data.* options) and gathers the figures. Throws finch::Error when the root cannot be read.
DatasetInfo dataset_info(const Config& config, const InfoOptions& options = {});

/// One JSON object with every figure (keys as in DatasetInfo).
nlohmann::json to_json(const DatasetInfo& info);

/// A short human-readable report.
std::string format_info(const DatasetInfo& info);

}  // namespace finch::data
