#include "finch/core/registry.h"

#include <cstdio>
#include <cstdlib>

namespace finch {

std::map<std::string, std::function<std::vector<RegistryListing>()>>& registry_catalogue() {
  static std::map<std::string, std::function<std::vector<RegistryListing>()>> catalogue;
  return catalogue;
}

std::vector<std::pair<std::string, OwnedOptions>>& registered_options() {
  static std::vector<std::pair<std::string, OwnedOptions>> options;
  return options;
}

void register_options(const std::string& owner, const std::vector<OwnedOptions>& options) {
  for (const auto& o : options) registered_options().emplace_back(owner, o);
}

void fail_duplicate_registration(const std::string& what, const std::string& name) {
  // At load time nothing can catch an exception: say what happened and stop.
  std::fprintf(stderr, "finch: two %ss are registered under the name '%s'; rename one\n",
               what.c_str(), name.c_str());
  std::abort();
}

}  // namespace finch
