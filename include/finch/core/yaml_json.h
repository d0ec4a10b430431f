#pragma once
// Conversions between YAML (configs) and JSON (model files, metrics). YAML scalars have no
// types, so a scalar becomes a bool, an integer, a float or a string, in that order.
#include <yaml-cpp/yaml.h>

#include <nlohmann/json.hpp>

namespace finch {

nlohmann::json yaml_to_json(const YAML::Node& node);
YAML::Node json_to_yaml(const nlohmann::json& value);

}  // namespace finch
