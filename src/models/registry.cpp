#include "finch/models/registry.h"

#include "finch/core/error.h"

namespace finch::models {

namespace {

std::string spec_name(const ModelSpec& spec, const std::string& key) {
  if (!spec.contains(key) || !spec[key].is_string()) {
    throw Error("model spec has no '" + key + "' name: " + spec.dump());
  }
  return spec[key].get<std::string>();
}

}  // namespace

// Function-local statics: safe to use from other files' static initialisers.
Registry<BackboneBuilder>& backbones() {
  static Registry<BackboneBuilder> registry("backbones", "backbone", "model.backbone");
  return registry;
}

Registry<HeadBuilder>& heads() {
  static Registry<HeadBuilder> registry("heads", "head", "model.head");
  return registry;
}

std::shared_ptr<BackboneImpl> build_backbone(const ModelSpec& spec) {
  return backbones().factory(spec_name(spec, "backbone"))(spec);
}

std::shared_ptr<HeadImpl> build_head(const ModelSpec& spec, const BackboneImpl& backbone) {
  return heads().factory(spec_name(spec, "head"))(spec, backbone);
}

ModelSpec spec_section(const ModelSpec& spec, const std::string& section) {
  if (!spec.contains(section) || spec[section].is_null()) return ModelSpec::object();
  if (!spec[section].is_object())
    throw Error("model." + section + " must be a map of options, got " + spec[section].dump());
  return spec[section];
}

std::vector<std::string> backbone_names() { return backbones().names(); }
std::vector<std::string> head_names() { return heads().names(); }

}  // namespace finch::models
