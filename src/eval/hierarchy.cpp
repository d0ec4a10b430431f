#include "finch/eval/hierarchy.h"

#include <fmt/format.h>

#include <map>

#include "finch/core/error.h"

namespace finch::eval {

HierarchicalMetrics hierarchical_metrics(const std::vector<std::vector<int64_t>>& confusion,
                                         const data::Hierarchy& hierarchy) {
  const size_t n = confusion.size();
  if (hierarchy.ancestors.size() != n)
    throw Error(fmt::format("the hierarchy has {} classes, the confusion matrix {}",
                            hierarchy.ancestors.size(), n));
  const size_t levels = hierarchy.levels.size();
  HierarchicalMetrics m;
  m.source = hierarchy.source;
  m.levels.push_back(hierarchy.class_level);
  m.levels.insert(m.levels.end(), hierarchy.levels.begin(), hierarchy.levels.end());
  std::vector<int64_t> right(levels + 1, 0);
  m.mistakes_by_height.assign(levels + 1, 0);
  std::map<std::string, size_t> parent_row;
  int64_t height_sum = 0;
  for (size_t t = 0; t < n; ++t) {
    const auto& truth = hierarchy.ancestors[t];
    auto [it, added] = parent_row.emplace(truth[0], m.by_parent.size());
    if (added) m.by_parent.push_back({truth[0]});
    ParentConfusion& group = m.by_parent[it->second];
    for (size_t p = 0; p < n; ++p) {
      const int64_t count = confusion[t].at(p);
      if (count == 0) continue;
      m.samples += count;
      group.support += count;
      const auto& predicted = hierarchy.ancestors[p];
      if (p == t) {
        for (auto& r : right) r += count;
        group.correct += count;
        continue;
      }
      m.mistakes += count;
      size_t height = levels + 1;  // no common ancestor: the (virtual) root
      for (size_t l = 0; l < levels; ++l)
        if (truth[l] == predicted[l]) {
          height = l + 1;
          break;
        }
      // Right at every level from the lowest common ancestor up.
      for (size_t l = height; l <= levels; ++l) right[l] += count;
      m.mistakes_by_height[height - 1] += count;
      height_sum += count * static_cast<int64_t>(height);
      (truth[0] == predicted[0] ? group.wrong_within : group.wrong_outside) += count;
    }
  }
  for (int64_t r : right) m.accuracy.push_back(m.samples ? double(r) / m.samples : 0.0);
  m.mean_mistake_height = m.mistakes ? double(height_sum) / m.mistakes : 0.0;
  return m;
}

nlohmann::json to_json(const HierarchicalMetrics& m) {
  nlohmann::json accuracy = nlohmann::json::object(), parents = nlohmann::json::array();
  for (size_t l = 0; l < m.levels.size(); ++l) accuracy[m.levels[l]] = m.accuracy[l];
  for (const auto& p : m.by_parent)
    parents.push_back({{"parent", p.parent},
                       {"support", p.support},
                       {"correct", p.correct},
                       {"wrong_within_parent", p.wrong_within},
                       {"wrong_other_parent", p.wrong_outside}});
  return {{"source", m.source},
          {"levels", m.levels},
          {"accuracy", accuracy},
          {"samples", m.samples},
          {"mistakes", m.mistakes},
          {"mean_mistake_height", m.mean_mistake_height},
          {"mistakes_by_height", m.mistakes_by_height},
          {"by_parent", parents}};
}

std::string format_hierarchical(const HierarchicalMetrics& m) {
  std::string out = fmt::format("hierarchy ({}):\n", m.source);
  for (size_t l = 0; l < m.levels.size(); ++l)
    out += fmt::format("  top-1 at {:<14} {:6.2f}%\n", m.levels[l], 100 * m.accuracy[l]);
  out += fmt::format("  {} mistakes, mean height of the lowest common ancestor {:.3f}", m.mistakes,
                     m.mean_mistake_height);
  std::string heights;
  for (size_t h = 0; h < m.mistakes_by_height.size(); ++h)
    heights += fmt::format("{}{}: {}", h ? ", " : "", h + 1, m.mistakes_by_height[h]);
  out += " (" + heights + ")\n";
  out += fmt::format("  {:<28} {:>8} {:>9} {:>14} {:>14}\n", m.levels.size() > 1 ? m.levels[1] : "",
                     "images", "correct", "wrong inside", "wrong outside");
  for (const auto& p : m.by_parent)
    out += fmt::format("  {:<28} {:>8} {:>8.2f}% {:>14} {:>14}\n", p.parent.substr(0, 28),
                       p.support, p.support ? 100.0 * p.correct / p.support : 0.0, p.wrong_within,
                       p.wrong_outside);
  return out;
}

}  // namespace finch::eval
