#pragma once
// One registry pattern for every pluggable part (dataset formats, backbones, heads, attention
// blocks, transforms, losses, optimizers, schedules). An entry has a name, a one-line
// description (`finch list KIND`, docs/registry.md) and its factory, and may own config keys
// with their documented defaults, so adding a part is one new file: the keys join the config
// schema when the entry registers (Config::defaults()), not by editing configs/defaults.yaml.
//
// Policy: a name registered twice is a programming error and stops the program at load time
// with both descriptions; an unknown name is a finch::Error that lists the known names.
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "finch/core/error.h"

namespace finch {

/// Config keys an entry owns: a YAML mapping merged into the defaults at `path` ("model" adds
/// model.cosine_scale; "model.wsdan" adds that section). Comments in `yaml` are kept for
/// `finch list`. Two entries may declare the same key only with the same default.
struct OwnedOptions {
  std::string path;
  std::string yaml;
};

/// What `finch list` shows of one entry.
struct RegistryListing {
  std::string name, description;
  std::vector<OwnedOptions> options;
};

/// Every registry by kind ("formats", "backbones", ...), for `finch list` and the docs.
std::map<std::string, std::function<std::vector<RegistryListing>()>>& registry_catalogue();

/// Config keys that registered entries own (read by Config::defaults()): (owner, options).
std::vector<std::pair<std::string, OwnedOptions>>& registered_options();

/// Registers into registered_options() under an owner like "head wsdan" (for messages).
void register_options(const std::string& owner, const std::vector<OwnedOptions>& options);

[[noreturn]] void fail_duplicate_registration(const std::string& what, const std::string& name);

template <typename Factory>
class Registry {
 public:
  struct Entry {
    std::string name;
    std::string description;  // one line
    Factory factory;
    std::vector<OwnedOptions> options;
  };

  /// `kind` is the plural `finch list` takes ("heads"); `noun` names one in messages ("head");
  /// `selector` is the config key or option that picks an entry ("model.head").
  Registry(std::string kind, std::string noun, std::string selector)
      : kind_(std::move(kind)), noun_(std::move(noun)), selector_(std::move(selector)) {
    registry_catalogue()[kind_] = [this] { return listing(); };
  }
  // The catalogue (constructed first, so destroyed last) keeps this object's address: a
  // registry is never copied or moved, and leaves the catalogue when it dies.
  ~Registry() { registry_catalogue().erase(kind_); }
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  /// Adds an entry; returns true (for static initialisers). A taken name aborts the program.
  bool add(Entry entry) {
    if (entries_.count(entry.name)) fail_duplicate_registration(noun_, entry.name);
    register_options(noun_ + " " + entry.name, entry.options);
    const std::string name = entry.name;
    entries_.emplace(name, std::move(entry));
    return true;
  }

  bool contains(const std::string& name) const { return entries_.count(name) > 0; }

  /// The entry `name`; throws finch::Error listing the known names otherwise.
  const Entry& at(const std::string& name) const {
    auto it = entries_.find(name);
    if (it == entries_.end()) {
      std::string known;
      for (const auto& [n, e] : entries_) known += (known.empty() ? "" : ", ") + n;
      throw Error("unknown " + noun_ + " '" + name + "' (" + selector_ + "; known: " + known +
                  "; `finch list " + kind_ + "` describes them)");
    }
    return it->second;
  }
  const Factory& factory(const std::string& name) const { return at(name).factory; }

  /// Names, sorted.
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& [n, e] : entries_) out.push_back(n);
    return out;
  }

  std::vector<RegistryListing> listing() const {
    std::vector<RegistryListing> out;
    for (const auto& [n, e] : entries_) out.push_back({n, e.description, e.options});
    return out;
  }

 private:
  std::string kind_, noun_, selector_;
  std::map<std::string, Entry> entries_;
};

}  // namespace finch
