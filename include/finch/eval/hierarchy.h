#pragma once
// Taxonomy-aware evaluation: accuracy at every level of the class hierarchy and how severe
// the mistakes are (Bertinetto et al. 2020, "Making better mistakes": the height of the
// lowest common ancestor of the true and the predicted class).
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "finch/data/hierarchy.h"

namespace finch::eval {

struct ParentConfusion {
  std::string parent;
  int64_t support = 0, correct = 0;
  int64_t wrong_within = 0;   // predicted another class of the same parent
  int64_t wrong_outside = 0;  // predicted a class of another parent
};

struct HierarchicalMetrics {
  std::vector<std::string> levels;  // "class", then the hierarchy's levels
  std::vector<double> accuracy;     // top-1 at each level: the predicted class's ancestor there
                                    // is the true class's
  int64_t samples = 0, mistakes = 0;
  /// Mean height of the lowest common ancestor over the mistakes: 1 = a sibling of the true
  /// class, levels.size() = no common ancestor below the root.
  double mean_mistake_height = 0;
  std::vector<int64_t> mistakes_by_height;  // [h - 1] mistakes of height h
  std::vector<ParentConfusion> by_parent;   // one per parent (level 1), in first-seen order
  std::string source;
};

/// From a confusion matrix [true][predicted] over the hierarchy's classes.
HierarchicalMetrics hierarchical_metrics(const std::vector<std::vector<int64_t>>& confusion,
                                         const data::Hierarchy& hierarchy);

nlohmann::json to_json(const HierarchicalMetrics& metrics);
std::string format_hierarchical(const HierarchicalMetrics& metrics);

}  // namespace finch::eval
