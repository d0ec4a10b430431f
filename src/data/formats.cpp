#include "finch/data/formats.h"

#include <map>

#include "finch/core/error.h"

namespace finch::data {

namespace {

// Function-local static: constructed on first use, so formats registering themselves from
// other translation units during static initialisation always find it.
std::map<std::string, DatasetFormat>& registry() {
  static std::map<std::string, DatasetFormat> formats;
  return formats;
}

std::string known_formats() {
  std::string out;
  for (const auto& name : dataset_format_names()) out += (out.empty() ? "" : ", ") + name;
  return out.empty() ? "none registered" : out;
}

}  // namespace

bool register_dataset_format(DatasetFormat format) {
  if (format.name.empty() || !format.splits || !format.open)
    throw Error("register_dataset_format: a format needs a name, splits and open");
  std::string name = format.name;
  if (!registry().emplace(name, std::move(format)).second)
    throw Error("dataset format '" + name + "' is registered twice");
  return true;
}

const DatasetFormat& dataset_format(const std::string& name) {
  auto it = registry().find(name);
  if (it == registry().end())
    throw Error("unknown dataset format '" + name + "' (known: " + known_formats() + ")");
  return it->second;
}

std::vector<std::string> dataset_format_names() {
  std::vector<std::string> names;
  for (const auto& [name, format] : registry()) names.push_back(name);
  return names;
}

DatasetPtr open_dataset(const std::string& format, const std::filesystem::path& root,
                        const std::string& split, const YAML::Node& options) {
  return dataset_format(format).open(root, split, options);
}

}  // namespace finch::data
