// libFuzzer target: a YAML config (the first file of the input) followed by `--set`
// assignments (one per further file, `key=value`), read as `finch train --config F --set ...`
// reads them. Any input must load or throw finch::Error; a config that loads must write
// itself back as YAML that loads again to the same YAML, and convert to JSON (the form stored
// in model files).
#include <cstdlib>
#include <string>
#include <vector>

#include "finch/core/config.h"
#include "finch/core/error.h"
#include "finch/core/yaml_json.h"
#include "fuzz_files.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<std::string> pieces = finch::fuzz::split_files(data, size, 8);
  std::string written;
  try {
    finch::Config config = finch::Config::from_yaml(pieces.front(), "fuzz.yaml");
    for (size_t k = 1; k < pieces.size(); ++k) config.apply_override(pieces[k]);
    written = config.to_yaml();
    // Paths need not be UTF-8, which JSON text must be: invalid bytes are replaced here.
    (void)finch::yaml_to_json(config.root())
        .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  } catch (const finch::Error&) {
    return 0;
  }
  // What finch wrote (a run's config.yaml) must load again: `--config RUN/config.yaml`.
  try {
    const finch::Config again = finch::Config::from_yaml(written, "written.yaml");
    if (again.to_yaml() != written) std::abort();
  } catch (const finch::Error&) {
    std::abort();
  }
  return 0;
}
