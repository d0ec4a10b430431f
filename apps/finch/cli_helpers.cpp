// Helpers shared by several subcommands.
#include <algorithm>

#include "commands.h"
#include "finch/data/formats.h"
#include "finch/io/image.h"

namespace finch::cli {

namespace fs = std::filesystem;

std::vector<fs::path> expand_image_inputs(const std::vector<std::string>& inputs) {
  std::vector<fs::path> paths;
  for (const auto& input : inputs) {
    if (!fs::is_directory(input)) {
      paths.emplace_back(input);
      continue;
    }
    std::vector<fs::path> found;
    for (const auto& entry : fs::recursive_directory_iterator(input)) {
      if (entry.is_regular_file() && io::has_image_extension(entry.path()))
        found.push_back(entry.path());
    }
    std::sort(found.begin(), found.end());
    paths.insert(paths.end(), found.begin(), found.end());
  }
  return paths;
}

std::string dataset_format_help() {
  std::string names;
  for (const auto& n : data::dataset_format_names()) names += (names.empty() ? "" : ", ") + n;
  return "Dataset format: " + names;
}

}  // namespace finch::cli
