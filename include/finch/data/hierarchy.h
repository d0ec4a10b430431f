#pragma once
// Class taxonomies: fine-grained labels are leaves of a hierarchy (a species in a genus, an
// aircraft variant in a family made by a manufacturer), so a mistake inside the right parent
// is a smaller mistake. Read from the dataset's own files or from a `class,parent` CSV.
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "finch/core/config.h"

namespace finch::data {

struct Hierarchy {
  std::string class_level = "class";  // what the classes themselves are ("variant" in Aircraft)
  std::vector<std::string> levels;    // names of the levels above the classes, nearest first
  /// [class][level]: the class's ancestor at each level. A class whose chain ends early keeps
  /// its topmost ancestor at the levels above it.
  std::vector<std::vector<std::string>> ancestors;
  std::string source;  // where it was read, for reports
};

/// From child -> parent edges (any depth; a parent may have its own parent). Every class must
/// have a parent; cycles are errors. `level_names` name the levels nearest first (missing
/// ones become "parent", "grandparent", "level 3", ...).
Hierarchy hierarchy_from_parents(const std::vector<std::string>& classes,
                                 const std::vector<std::pair<std::string, std::string>>& edges,
                                 std::vector<std::string> level_names, const std::string& source);

/// A CSV of `class,parent` lines (an optional header line `class,parent`). Errors name the
/// file and line, or the first class without a parent.
Hierarchy read_hierarchy_csv(const std::filesystem::path& file,
                             const std::vector<std::string>& classes);

/// The hierarchy a dataset format ships, for the classes `classes` of the configured data:
///   aircraft  variant -> family -> manufacturer, joined by image id across the label files
///             (from data.level upward);
///   nabirds   hierarchy.txt over classes.txt's names;
///   inat      the categories' taxonomy ranks (genus ... kingdom; 2017: supercategory).
/// std::nullopt for formats without one.
std::optional<Hierarchy> dataset_hierarchy(const Config& config,
                                           const std::vector<std::string>& classes);

}  // namespace finch::data
