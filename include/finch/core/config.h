#pragma once
// Run configuration: the documented defaults (configs/defaults.yaml, compiled in), then a
// user's YAML recipe, then `--set a.b=c` overrides. Any key that is not in the defaults
// is an error naming it, so a typo never silently does nothing.
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <string>
#include <vector>

namespace finch {

class Config {
 public:
  /// The defaults alone.
  static Config defaults();
  /// defaults <- YAML file (if not empty) <- overrides ("a.b=value", value parsed as YAML).
  static Config load(const std::filesystem::path& file, const std::vector<std::string>& overrides);
  /// Parses a YAML string merged onto the defaults (`source` names it in errors).
  static Config from_yaml(const std::string& yaml, const std::string& source);

  /// Sets one dotted key from a command-line value; throws finch::Error for unknown keys. The
  /// value is parsed as YAML unless the key's documented default is a string, in which case
  /// it is taken literally (a root named "#weird", "[a]" or "null" stays that string).
  void set(const std::string& dotted_key, const std::string& yaml_value);
  /// Sets a key to this exact string (never parsed).
  void set_string(const std::string& dotted_key, const std::string& value);
  /// Applies one "a.b=value" override.
  void apply_override(const std::string& assignment);

  /// The node at a dotted key; throws finch::Error when absent.
  YAML::Node node(const std::string& dotted_key) const;
  /// Typed value at a dotted key; throws finch::Error naming the key on a type mismatch.
  template <typename T>
  T get(const std::string& dotted_key) const {
    YAML::Node n = node(dotted_key);
    try {
      return n.as<T>();
    } catch (const YAML::Exception&) {
      throw_type_error(dotted_key, n);
    }
  }

  /// The effective configuration as YAML text.
  std::string to_yaml() const;
  const YAML::Node& root() const { return root_; }

 private:
  explicit Config(YAML::Node root) : root_(std::move(root)) {}
  [[noreturn]] static void throw_type_error(const std::string& key, const YAML::Node& n);
  void set_node(const std::string& dotted_key, const YAML::Node& value);
  YAML::Node root_;
};

}  // namespace finch
