#include "finch/data/formats.h"

#include "finch/core/error.h"

namespace finch::data {

namespace {

// Function-local static: constructed on first use, so formats registering themselves from
// other translation units during static initialisation always find it.
Registry<DatasetFormat>& registry() {
  static Registry<DatasetFormat> formats("formats", "dataset format", "data.format / --dataset");
  return formats;
}

}  // namespace

bool register_dataset_format(DatasetFormat format) {
  if (format.name.empty() || !format.splits || !format.open)
    throw Error("register_dataset_format: a format needs a name, splits and open");
  std::string name = format.name, description = format.description;
  std::vector<OwnedOptions> options = format.options;
  return registry().add({name, description, std::move(format), options});
}

const DatasetFormat& dataset_format(const std::string& name) { return registry().factory(name); }

std::vector<std::string> dataset_format_names() { return registry().names(); }

DatasetPtr open_dataset(const std::string& format, const std::filesystem::path& root,
                        const std::string& split, const YAML::Node& options) {
  return dataset_format(format).open(root, split, options);
}

}  // namespace finch::data
