#include "finch/data/hierarchy.h"

#include <fmt/format.h>

#include <cstdint>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "datasets/cub_style.h"
#include "finch/core/atomic_file.h"
#include "finch/core/csv.h"
#include "finch/core/error.h"

namespace finch::data {

namespace {

namespace fs = std::filesystem;

std::string default_level_name(size_t level) {
  if (level == 0) return "parent";
  if (level == 1) return "grandparent";
  return fmt::format("level {}", level + 1);
}

// Aircraft: each image's name at every level, joined by image id; an edge per adjacent pair.
Hierarchy aircraft_hierarchy(const fs::path& given_root, const std::string& level,
                             const std::vector<std::string>& classes) {
  const fs::path root = cub_style::file_exists(given_root / "variants.txt") ||
                                !cub_style::file_exists(given_root / "data" / "variants.txt")
                            ? given_root
                            : given_root / "data";
  const std::vector<std::string> all{"variant", "family", "manufacturer"};
  auto start = std::find(all.begin(), all.end(), level);
  if (start == all.end()) throw Error("aircraft: unknown data.level '" + level + "'");
  const std::vector<std::string> chain(start, all.end());
  std::map<std::pair<std::string, std::string>, std::string> parent;  // (level, name) -> parent
  std::vector<std::pair<std::string, std::string>> edges;
  for (const char* split : {"train", "val", "trainval", "test"}) {
    std::vector<std::map<std::string, std::string>> names(chain.size());  // image id -> name
    bool complete = true;
    for (size_t l = 0; l < chain.size(); ++l) {
      const fs::path file = root / ("images_" + chain[l] + "_" + split + ".txt");
      if (!cub_style::file_exists(file)) {
        complete = false;
        break;
      }
      cub_style::for_each_line(file, [&](const cub_style::Line& line) {
        names[l][std::string(line.fields.at(0))] = line.rest();
      });
    }
    if (!complete) continue;
    for (const auto& [id, name] : names[0]) {
      std::string child = name;
      for (size_t l = 1; l < chain.size(); ++l) {
        auto it = names[l].find(id);
        if (it == names[l].end()) break;
        auto [known, inserted] = parent.emplace(std::make_pair(chain[l - 1], child), it->second);
        if (!inserted && known->second != it->second)
          throw Error(fmt::format("aircraft: {} '{}' is in {} '{}' and '{}' (image {}, split {})",
                                  chain[l - 1], child, chain[l], known->second, it->second, id,
                                  split));
        if (inserted) edges.emplace_back(chain[l - 1] + ":" + child, chain[l] + ":" + it->second);
        child = it->second;
      }
    }
  }
  if (edges.empty())
    throw Error("aircraft: no images_<level>_<split>.txt triple to read the hierarchy from in " +
                root.string());
  // Names are unique per level only (a family and a manufacturer may share one): edges use
  // "level:name" keys, stripped again below.
  std::vector<std::string> keyed;
  for (const auto& c : classes) keyed.push_back(chain[0] + ":" + c);
  Hierarchy h =
      hierarchy_from_parents(keyed, edges, std::vector<std::string>(chain.begin() + 1, chain.end()),
                             "aircraft label files (" + root.string() + ")");
  for (auto& row : h.ancestors)
    for (auto& a : row) a = a.substr(a.find(':') + 1);
  h.class_level = chain[0];
  return h;
}

Hierarchy nabirds_hierarchy(const fs::path& root, const std::vector<std::string>& classes) {
  const auto names = cub_style::read_id_names(root / "classes.txt");
  std::vector<std::pair<std::string, std::string>> edges;
  cub_style::for_each_line(root / "hierarchy.txt", [&](const cub_style::Line& line) {
    line.expect_fields(2, 2, "<child_id> <parent_id>");
    const int64_t child = line.integer(0, "child id"), parent = line.integer(1, "parent id");
    if (!names.count(child) || !names.count(parent))
      line.fail("class id not listed in classes.txt");
    edges.emplace_back(names.at(child), names.at(parent));
  });
  // The root of the taxonomy ("Birds") has no parent: classes directly below it stop there.
  return hierarchy_from_parents(classes, edges, {}, (root / "hierarchy.txt").string());
}

}  // namespace

Hierarchy hierarchy_from_parents(const std::vector<std::string>& classes,
                                 const std::vector<std::pair<std::string, std::string>>& edges,
                                 std::vector<std::string> level_names, const std::string& source) {
  std::map<std::string, std::string> parent_of;
  for (const auto& [child, parent] : edges) {
    auto [it, inserted] = parent_of.emplace(child, parent);
    if (!inserted && it->second != parent)
      throw Error(fmt::format("{}: '{}' has two parents, '{}' and '{}'", source, child, it->second,
                              parent));
  }
  Hierarchy h;
  h.source = source;
  size_t depth = 0;
  for (const auto& c : classes) {
    auto& chain = h.ancestors.emplace_back();
    std::set<std::string> seen{c};
    for (auto it = parent_of.find(c); it != parent_of.end(); it = parent_of.find(it->second)) {
      if (!seen.insert(it->second).second)
        throw Error(fmt::format("{}: the parents of '{}' form a cycle", source, c));
      chain.push_back(it->second);
    }
    if (chain.empty())
      throw Error(
          fmt::format("{}: class '{}' has no parent (every class of the dataset needs "
                      "one)",
                      source, c));
    depth = std::max(depth, chain.size());
  }
  for (auto& chain : h.ancestors) chain.resize(depth, chain.back());
  for (size_t l = 0; l < depth; ++l)
    h.levels.push_back(l < level_names.size() ? level_names[l] : default_level_name(l));
  return h;
}

Hierarchy read_hierarchy_csv(const fs::path& file, const std::vector<std::string>& classes) {
  std::ifstream in(file);
  if (!in) throw Error("cannot read the hierarchy file " + file.string());
  std::vector<std::pair<std::string, std::string>> edges;
  std::string line;
  for (size_t number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const auto fields = split_csv_line(line, file.string(), number);
    if (number == 1 && fields.size() == 2 && fields[0] == "class" && fields[1] == "parent")
      continue;
    if (fields.size() != 2 || fields[0].empty() || fields[1].empty())
      throw line_error(file.string(), number, "expected `class,parent`", line);
    edges.emplace_back(fields[0], fields[1]);
  }
  return hierarchy_from_parents(classes, edges, {}, file.string());
}

// iNaturalist: every category carries its taxonomy (2018 onwards: genus ... kingdom; 2017 only
// a supercategory). The categories are the same in every split file of a release, so the
// smallest file is read. Levels are the ranks every category has, nearest first.
std::optional<Hierarchy> inat_hierarchy(const fs::path& root,
                                        const std::vector<std::string>& classes) {
  std::error_code ec;
  fs::path smallest;
  uintmax_t size = UINTMAX_MAX;
  for (const auto& entry : fs::directory_iterator(root, ec))
    if (entry.path().extension() == ".json" && entry.file_size(ec) < size)
      size = entry.file_size(ec), smallest = entry.path();
  if (smallest.empty()) return std::nullopt;
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(read_file(smallest));
  } catch (const nlohmann::json::exception& e) {
    throw Error(smallest.string() + ": not valid JSON: " + e.what());
  }
  const auto categories = doc.find("categories");
  if (categories == doc.end() || !categories->is_array()) return std::nullopt;
  std::map<std::string, const nlohmann::json*> by_name;
  for (const auto& c : *categories)
    if (c.contains("name") && c["name"].is_string()) by_name[c["name"].get<std::string>()] = &c;
  Hierarchy h;
  h.class_level = "species";
  h.source = smallest.string() + " (categories)";
  for (const char* rank :
       {"genus", "family", "order", "class", "phylum", "kingdom", "supercategory"}) {
    bool everywhere = true;
    for (const auto& name : classes) {
      auto it = by_name.find(name);
      everywhere = everywhere && it != by_name.end() && it->second->contains(rank) &&
                   (*it->second)[rank].is_string() &&
                   !(*it->second)[rank].get<std::string>().empty();
    }
    // The 2017 supercategory only when there is no finer rank (later releases repeat the
    // kingdom or class there).
    if (!everywhere || (std::string(rank) == "supercategory" && !h.levels.empty())) continue;
    h.levels.push_back(rank);
  }
  if (h.levels.empty()) return std::nullopt;
  for (const auto& name : classes) {
    auto& chain = h.ancestors.emplace_back();
    for (const auto& rank : h.levels) chain.push_back((*by_name.at(name))[rank].get<std::string>());
  }
  return h;
}

std::optional<Hierarchy> dataset_hierarchy(const Config& config,
                                           const std::vector<std::string>& classes) {
  const std::string format = config.get<std::string>("data.format");
  const fs::path root = config.get<std::string>("data.root");
  if (format == "aircraft") {
    return aircraft_hierarchy(root, config.get<std::string>("data.level"), classes);
  }
  if (format == "nabirds") return nabirds_hierarchy(root, classes);
  if (format == "inat") return inat_hierarchy(root, classes);
  return std::nullopt;
}

}  // namespace finch::data
