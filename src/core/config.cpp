#include "finch/core/config.h"

#include <sstream>

#include "finch/config_defaults.h"
#include "finch/core/atomic_file.h"
#include "finch/core/error.h"
#include "finch/core/registry.h"

namespace finch {

namespace {

std::vector<std::string> split_key(const std::string& dotted) {
  std::vector<std::string> parts;
  std::stringstream stream(dotted);
  std::string part;
  while (std::getline(stream, part, '.')) {
    if (part.empty()) throw Error("bad config key '" + dotted + "'");
    parts.push_back(part);
  }
  if (parts.empty()) throw Error("empty config key");
  return parts;
}

std::vector<std::string> map_keys(const YAML::Node& map) {
  std::vector<std::string> keys;
  for (const auto& kv : map) keys.push_back(kv.first.as<std::string>());
  return keys;
}

std::string join(const std::vector<std::string>& items, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i ? sep : "") + items[i];
  return out;
}

// Merges `user` onto `base` in place. Maps merge key by key (unknown keys are errors);
// anything else (scalars, lists) replaces the default wholesale.
void merge(YAML::Node base, const YAML::Node& user, const std::string& prefix,
           const std::string& source) {
  if (!user.IsMap()) {
    throw Error(source + ": '" + (prefix.empty() ? "<top level>" : prefix) +
                "' must be a mapping of keys");
  }
  for (const auto& kv : user) {
    const std::string key = kv.first.as<std::string>();
    const std::string full = prefix.empty() ? key : prefix + "." + key;
    if (!base[key]) {
      throw Error(source + ": unknown config key '" + full + "' (known keys" +
                  (prefix.empty() ? "" : " in '" + prefix + "'") + ": " +
                  join(map_keys(base), ", ") + ")");
    }
    YAML::Node target = base[key];
    if (target.IsMap()) {
      merge(target, kv.second, full, source);
    } else {
      if (kv.second.IsMap()) throw Error(source + ": '" + full + "' takes a value, not a mapping");
      base[key] = YAML::Clone(kv.second);
    }
  }
}

// YAML aliases share nodes, so `&a [*a]` is a node that contains itself and ten nested
// aliases to ten-element lists stand for 10^10 values ("billion laughs"): copying or
// writing either never ends. A config is small; refuse anything deeper or larger, and keys
// that are not plain names (`[a]: 1`).
constexpr int kMaxYamlDepth = 64;
constexpr size_t kMaxYamlNodes = 100000;

void check_shape(const YAML::Node& node, int depth, size_t& budget, const std::string& source) {
  if (depth > kMaxYamlDepth || budget == 0)
    throw Error(source + ": the YAML is nested more than " + std::to_string(kMaxYamlDepth) +
                " levels deep or holds more than " + std::to_string(kMaxYamlNodes) +
                " values (an alias that refers to itself or expands without end?)");
  --budget;
  if (node.IsScalar()) {
    // Control characters (a stray carriage return, say) cannot be written back faithfully:
    // a run's config.yaml would load as another config (found by config_fuzz).
    for (unsigned char c : node.Scalar())
      if (c < 0x20 && c != '\t' && c != '\n')
        throw Error(source + ": the value '" + node.Scalar().substr(0, 40) +
                    "' holds a control character (byte " + std::to_string(c) +
                    "); config values are text");
  } else if (node.IsMap()) {
    for (const auto& kv : node) {
      if (!kv.first.IsScalar())
        throw Error(source + ": config keys must be plain names, not lists or mappings");
      check_shape(kv.first, depth + 1, budget, source);
      check_shape(kv.second, depth + 1, budget, source);
    }
  } else if (node.IsSequence()) {
    for (const auto& item : node) check_shape(item, depth + 1, budget, source);
  }
}

YAML::Node parse_yaml(const std::string& text, const std::string& source) {
  YAML::Node node;
  try {
    node = YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    throw Error(source + ":" + std::to_string(e.mark.line + 1) + ": invalid YAML: " + e.msg);
  }
  size_t budget = kMaxYamlNodes;
  check_shape(node, 0, budget, source);
  return node;
}

// The keys registered parts own (a head's section, a format's options) join the schema here.
void add_owned_options(YAML::Node& root, const std::string& owner, const OwnedOptions& options) {
  YAML::Node values = parse_yaml(options.yaml, owner + "'s options");
  if (!values.IsMap()) throw Error(owner + ": its options must be a YAML mapping");
  YAML::Node target = root;
  for (const auto& part : split_key(options.path)) {
    if (!target[part]) target[part] = YAML::Node(YAML::NodeType::Map);
    target.reset(target[part]);
  }
  if (!target.IsMap()) throw Error(owner + ": config key '" + options.path + "' is not a section");
  for (const auto& kv : values) {
    const std::string key = kv.first.as<std::string>();
    if (target[key] && YAML::Dump(target[key]) != YAML::Dump(kv.second))
      throw Error(owner + " declares " + options.path + "." + key + " with another default (" +
                  YAML::Dump(kv.second) + ") than it already has (" + YAML::Dump(target[key]) +
                  ")");
    target[key] = YAML::Clone(kv.second);
  }
}

}  // namespace

Config Config::defaults() {
  YAML::Node root = parse_yaml(kDefaultConfigYaml, "defaults.yaml");
  for (const auto& [owner, options] : registered_options()) add_owned_options(root, owner, options);
  return Config(root);
}

Config Config::from_yaml(const std::string& yaml, const std::string& source) {
  Config config = defaults();
  YAML::Node user = parse_yaml(yaml, source);
  if (!user.IsNull()) merge(config.root_, user, "", source);
  return config;
}

Config Config::load(const std::filesystem::path& file, const std::vector<std::string>& overrides) {
  Config config = file.empty() ? defaults() : from_yaml(read_file(file), file.string());
  for (const auto& assignment : overrides) config.apply_override(assignment);
  return config;
}

void Config::apply_override(const std::string& assignment) {
  auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) {
    throw Error("--set expects key=value (e.g. --set train.epochs=5), got '" + assignment + "'");
  }
  set(assignment.substr(0, eq), assignment.substr(eq + 1));
}

namespace {

// True when the documented default of a key is a string: quoted, or a plain scalar that YAML
// would not read as a number, a boolean or null. Such keys take command-line values
// literally ("#weird", "[a]", "null" and "yes" stay the strings they are).
bool is_string_key(const YAML::Node& default_value) {
  if (!default_value.IsScalar()) return false;
  if (default_value.Tag() == "!") return true;  // quoted in defaults.yaml
  const std::string& text = default_value.Scalar();
  if (text.empty() || text == "~" || text == "null" || text == "Null" || text == "NULL")
    return false;
  try {
    default_value.as<bool>();
    return false;
  } catch (const YAML::Exception&) {
  }
  try {
    default_value.as<double>();
    return false;
  } catch (const YAML::Exception&) {
  }
  return true;
}

}  // namespace

void Config::set(const std::string& dotted_key, const std::string& yaml_value) {
  // The schema is the documented default, not the current value (which may be anything).
  static const Config kSchema = defaults();
  YAML::Node documented;
  try {
    documented = kSchema.node(dotted_key);
  } catch (const Error&) {
    // Unknown key: the merge below names it with the known ones.
  }
  if (documented && is_string_key(documented)) return set_string(dotted_key, yaml_value);
  set_node(dotted_key, parse_yaml(yaml_value.empty() ? "''" : yaml_value, "--set " + dotted_key));
}

void Config::set_string(const std::string& dotted_key, const std::string& value) {
  YAML::Node node(value);
  size_t budget = kMaxYamlNodes;
  check_shape(node, 0, budget, "--set " + dotted_key);  // no control characters
  set_node(dotted_key, node);
}

void Config::set_node(const std::string& dotted_key, const YAML::Node& value) {
  // Build {a: {b: value}} and merge it, so overrides follow the same rules as files.
  auto parts = split_key(dotted_key);
  YAML::Node wrapped = value;
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
    YAML::Node outer(YAML::NodeType::Map);
    outer[*it] = wrapped;
    wrapped.reset(outer);
  }
  merge(root_, wrapped, "", "--set");
}

YAML::Node Config::node(const std::string& dotted_key) const {
  // yaml-cpp's Node::operator= rebinds the *content*; reset() rebinds the handle.
  YAML::Node current;
  current.reset(root_);
  for (const auto& part : split_key(dotted_key)) {
    const YAML::Node& view = current;  // const access never inserts keys
    if (!view.IsMap() || !view[part]) throw Error("config key '" + dotted_key + "' not found");
    current.reset(view[part]);
  }
  return YAML::Clone(current);
}

void Config::throw_type_error(const std::string& key, const YAML::Node& n) {
  YAML::Emitter out;
  out << YAML::Flow << n;
  throw Error("config key '" + key + "' has a value of the wrong type: " + out.c_str());
}

std::string Config::to_yaml() const {
  YAML::Emitter out;
  out << root_;
  return std::string(out.c_str()) + "\n";
}

}  // namespace finch
