#pragma once
// The backbone and head registries (core/registry.h). Each backbone family / head lives in its
// own file under src/models/{backbones,heads}/ and registers itself with its description and
// the config keys it owns (a head's `model.<head>` section).
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "finch/core/error.h"
#include "finch/core/registry.h"
#include "finch/models/model.h"

namespace finch::models {

using BackboneBuilder = std::function<std::shared_ptr<BackboneImpl>(const ModelSpec& spec)>;
/// Builds a head for `backbone` (which it may ask for num_features() or embedding_dim()).
using HeadBuilder =
    std::function<std::shared_ptr<HeadImpl>(const ModelSpec& spec, const BackboneImpl& backbone)>;

Registry<BackboneBuilder>& backbones();
Registry<HeadBuilder>& heads();

std::shared_ptr<BackboneImpl> build_backbone(const ModelSpec& spec);
std::shared_ptr<HeadImpl> build_head(const ModelSpec& spec, const BackboneImpl& backbone);

std::vector<std::string> backbone_names();
std::vector<std::string> head_names();

/// Reads spec[key] or returns `fallback` (typed; throws finch::Error on a wrong type).
template <typename T>
T spec_value(const ModelSpec& spec, const std::string& key, T fallback) {
  if (!spec.contains(key) || spec[key].is_null()) return fallback;
  try {
    return spec[key].get<T>();
  } catch (const std::exception&) {
    throw ::finch::Error("model." + key + " has the wrong type: " + spec[key].dump());
  }
}

/// spec[section] as an object, e.g. the `model.wsdan` options; empty when absent. Throws
/// finch::Error when it is not a map.
ModelSpec spec_section(const ModelSpec& spec, const std::string& section);

}  // namespace finch::models

#define FINCH_MODELS_CONCAT_INNER(a, b) a##b
#define FINCH_MODELS_CONCAT(a, b) FINCH_MODELS_CONCAT_INNER(a, b)
/// FINCH_REGISTER_BACKBONE({name, description, builder, {owned options}}).
#define FINCH_REGISTER_BACKBONE(...)                                            \
  static const bool FINCH_MODELS_CONCAT(finch_backbone_registered_, __LINE__) = \
      ::finch::models::backbones().add(__VA_ARGS__)
#define FINCH_REGISTER_HEAD(...)                                            \
  static const bool FINCH_MODELS_CONCAT(finch_head_registered_, __LINE__) = \
      ::finch::models::heads().add(__VA_ARGS__)
