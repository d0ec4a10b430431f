#include "finch/models/registry.h"

#include <map>

#include "finch/core/error.h"

namespace finch::models {

namespace {

// Function-local statics: safe to use from other files' static initialisers.
std::map<std::string, BackboneBuilder>& backbones() {
  static std::map<std::string, BackboneBuilder> registry;
  return registry;
}
std::map<std::string, HeadBuilder>& heads() {
  static std::map<std::string, HeadBuilder> registry;
  return registry;
}

template <typename Map>
std::vector<std::string> names_of(const Map& map) {
  std::vector<std::string> names;
  for (const auto& kv : map) names.push_back(kv.first);
  return names;
}

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

std::string spec_name(const ModelSpec& spec, const std::string& key) {
  if (!spec.contains(key) || !spec[key].is_string()) {
    throw Error("model spec has no '" + key + "' name: " + spec.dump());
  }
  return spec[key].get<std::string>();
}

}  // namespace

bool register_backbone(const std::string& name, BackboneBuilder builder) {
  if (!backbones().emplace(name, std::move(builder)).second) {
    throw std::logic_error("backbone registered twice: " + name);
  }
  return true;
}

bool register_head(const std::string& name, HeadBuilder builder) {
  if (!heads().emplace(name, std::move(builder)).second) {
    throw std::logic_error("head registered twice: " + name);
  }
  return true;
}

std::shared_ptr<BackboneImpl> build_backbone(const ModelSpec& spec) {
  const std::string name = spec_name(spec, "backbone");
  auto it = backbones().find(name);
  if (it == backbones().end()) {
    throw Error("unknown model.backbone '" + name + "' (known: " + joined(backbone_names()) + ")");
  }
  return it->second(spec);
}

std::shared_ptr<HeadImpl> build_head(const ModelSpec& spec, const BackboneImpl& backbone) {
  const std::string name = spec_name(spec, "head");
  auto it = heads().find(name);
  if (it == heads().end()) {
    throw Error("unknown model.head '" + name + "' (known: " + joined(head_names()) + ")");
  }
  return it->second(spec, backbone);
}

ModelSpec spec_section(const ModelSpec& spec, const std::string& section) {
  if (!spec.contains(section) || spec[section].is_null()) return ModelSpec::object();
  if (!spec[section].is_object())
    throw Error("model." + section + " must be a map of options, got " + spec[section].dump());
  return spec[section];
}

std::vector<std::string> backbone_names() { return names_of(backbones()); }
std::vector<std::string> head_names() { return names_of(heads()); }

}  // namespace finch::models
