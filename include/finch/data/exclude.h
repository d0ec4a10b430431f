#pragma once
// `data.exclude`: leave listed images out of every split of any format, e.g. the images the
// data doctor flagged (its flagged.csv), without touching the dataset folder.
#include <filesystem>
#include <string>
#include <unordered_set>

#include "finch/data/dataset.h"

namespace finch::data {

/// The `path` column of a CSV with a header line. When the CSV has an `action` column (as the
/// doctor's flagged.csv), rows whose action is `kept` are not listed. Errors name the file
/// and line.
std::unordered_set<std::string> read_exclusion_list(const std::filesystem::path& file);

/// `dataset` without the samples whose describe() is listed, as written or relative to
/// `root` (the form the doctor writes).
DatasetPtr exclude_listed(DatasetPtr dataset, const std::unordered_set<std::string>& listed,
                          const std::filesystem::path& root);

}  // namespace finch::data
