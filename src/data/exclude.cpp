#include "finch/data/exclude.h"

#include <algorithm>
#include <fstream>
#include <vector>

#include "finch/core/csv.h"
#include "finch/core/error.h"

namespace finch::data {

namespace fs = std::filesystem;

std::unordered_set<std::string> read_exclusion_list(const fs::path& file) {
  std::ifstream in(file);
  if (!in) throw Error("data.exclude: cannot read " + file.string());
  std::unordered_set<std::string> listed;
  std::string line;
  long path_column = -1, action_column = -1;
  for (size_t number = 1; std::getline(in, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    const auto fields = split_csv_line(line, file.string(), number);
    if (path_column < 0) {
      for (size_t c = 0; c < fields.size(); ++c) {
        if (fields[c] == "path") path_column = static_cast<long>(c);
        if (fields[c] == "action") action_column = static_cast<long>(c);
      }
      if (path_column < 0)
        throw line_error(file.string(), number,
                         "expected a header line with a `path` column (as the doctor's "
                         "flagged.csv: path,split,label,reason,...)",
                         line);
      continue;
    }
    if (static_cast<size_t>(path_column) >= fields.size())
      throw line_error(file.string(), number, "the row has no `path` field", line);
    if (action_column >= 0 && static_cast<size_t>(action_column) < fields.size() &&
        fields[action_column] == "kept")
      continue;
    listed.insert(fields[path_column]);
  }
  if (path_column < 0) throw Error("data.exclude: " + file.string() + " is empty");
  return listed;
}

DatasetPtr exclude_listed(DatasetPtr dataset, const std::unordered_set<std::string>& listed,
                          const fs::path& root) {
  if (listed.empty()) return dataset;
  std::vector<size_t> kept;
  for (size_t i = 0; i < dataset->size(); ++i) {
    const std::string where = dataset->describe(i);
    const bool drop = listed.count(where) ||
                      listed.count(fs::path(where).lexically_relative(root).generic_string());
    if (!drop) kept.push_back(i);
  }
  if (kept.size() == dataset->size()) return dataset;
  return std::make_shared<SubsetDataset>(std::move(dataset), std::move(kept));
}

}  // namespace finch::data
