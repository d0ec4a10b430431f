#include "finch/core/yaml_json.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>

namespace finch {

namespace {

nlohmann::json scalar_to_json(const YAML::Node& node) {
  const std::string& text = node.Scalar();
  if (node.Tag() == "!") return text;  // quoted in the source: always a string
  if (text == "true" || text == "True" || text == "yes") return true;
  if (text == "false" || text == "False" || text == "no") return false;
  if (text == "null" || text == "~") return nullptr;
  if (!text.empty()) {
    char* end = nullptr;
    errno = 0;
    long long integer = std::strtoll(text.c_str(), &end, 10);
    if (*end == '\0' && errno != ERANGE) return integer;
    double real = std::strtod(text.c_str(), &end);
    // JSON has no inf or nan (1e400, "nan"): those stay the text they are.
    if (*end == '\0' && std::isfinite(real)) return real;
  }
  return text;
}

}  // namespace

nlohmann::json yaml_to_json(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map: {
      nlohmann::json out = nlohmann::json::object();
      for (const auto& kv : node) out[kv.first.as<std::string>()] = yaml_to_json(kv.second);
      return out;
    }
    case YAML::NodeType::Sequence: {
      nlohmann::json out = nlohmann::json::array();
      for (const auto& item : node) out.push_back(yaml_to_json(item));
      return out;
    }
    case YAML::NodeType::Scalar:
      return scalar_to_json(node);
    default:
      return nullptr;
  }
}

YAML::Node json_to_yaml(const nlohmann::json& value) {
  YAML::Node node;
  if (value.is_object()) {
    node = YAML::Node(YAML::NodeType::Map);
    for (const auto& [key, item] : value.items()) node[key] = json_to_yaml(item);
  } else if (value.is_array()) {
    node = YAML::Node(YAML::NodeType::Sequence);
    for (const auto& item : value) node.push_back(json_to_yaml(item));
  } else if (value.is_string()) {
    node = value.get<std::string>();
    // Keep strings that look like numbers or booleans strings (as quoting does in YAML).
    if (!scalar_to_json(node).is_string()) node.SetTag("!");
  } else if (value.is_boolean()) {
    node = value.get<bool>();
  } else if (value.is_number_integer()) {
    node = value.get<int64_t>();
  } else if (value.is_number()) {
    node = value.get<double>();
  }
  return node;
}

}  // namespace finch
