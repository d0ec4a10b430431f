// The fuzz targets without libFuzzer, for `make test` (ctest `fuzz.replay`): every target runs
// its seeds (fuzz/make_seed_corpus.py), the inputs that once crashed it (fuzz/regressions/),
// and a fixed number of deterministic mutants of each seed. Not coverage-guided and not
// sanitized (that is scripts/fuzz.sh, which needs a clang build); it keeps every fixed crash
// fixed and shakes each parser a little on every CI run. A crash names the input.
//   fuzz_replay SEEDS_DIR REGRESSIONS_DIR [MUTANTS_PER_SEED]
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "fuzz_files.h"

// Each target's entry point, renamed at compile time (fuzz/CMakeLists.txt).
#define FINCH_FUZZ_ENTRY(name) extern "C" int finch_fuzz_##name(const uint8_t*, size_t);
FINCH_FUZZ_ENTRY(safetensors)
FINCH_FUZZ_ENTRY(gguf)
FINCH_FUZZ_ENTRY(tfjs)
FINCH_FUZZ_ENTRY(idx)
FINCH_FUZZ_ENTRY(image)
FINCH_FUZZ_ENTRY(config)
FINCH_FUZZ_ENTRY(base64)
FINCH_FUZZ_ENTRY(http)
FINCH_FUZZ_ENTRY(dataset)

namespace {

namespace fs = std::filesystem;
using Entry = int (*)(const uint8_t*, size_t);

struct Target {
  const char* name;
  Entry entry;
  const char* format;  // dataset targets share one entry point
};

const Target kTargets[] = {
    {"safetensors_fuzz", finch_fuzz_safetensors, ""},
    {"gguf_fuzz", finch_fuzz_gguf, ""},
    {"tfjs_fuzz", finch_fuzz_tfjs, ""},
    {"idx_fuzz", finch_fuzz_idx, ""},
    {"image_fuzz", finch_fuzz_image, ""},
    {"config_fuzz", finch_fuzz_config, ""},
    {"base64_fuzz", finch_fuzz_base64, ""},
    {"http_fuzz", finch_fuzz_http, ""},
    {"cub_fuzz", finch_fuzz_dataset, "cub"},
    {"nabirds_fuzz", finch_fuzz_dataset, "nabirds"},
    {"aircraft_fuzz", finch_fuzz_dataset, "aircraft"},
    {"inat_fuzz", finch_fuzz_dataset, "inat"},
    {"csv_fuzz", finch_fuzz_dataset, "csv"},
    {"cars_fuzz", finch_fuzz_dataset, "cars"},
    {"flowers102_fuzz", finch_fuzz_dataset, "flowers102"},
    {"dogs_fuzz", finch_fuzz_dataset, "dogs"},
};

// What is running, for the crash handler.
char g_current[512] = "";

void on_crash(int sig) {
  const char prefix[] = "\nfuzz_replay: crashed on ";
  (void)!write(2, prefix, sizeof prefix - 1);
  (void)!write(2, g_current, strlen(g_current));
  (void)!write(2, "\n", 1);
  signal(sig, SIG_DFL);
  raise(sig);
}

std::vector<std::pair<std::string, std::string>> read_folder(const fs::path& folder) {
  std::vector<std::pair<std::string, std::string>> out;
  std::error_code ec;
  if (!fs::is_directory(folder, ec)) return out;
  for (const auto& e : fs::directory_iterator(folder)) {
    if (!e.is_regular_file()) continue;
    std::ifstream in(e.path(), std::ios::binary);
    out.emplace_back(e.path().string(), std::string(std::istreambuf_iterator<char>(in), {}));
  }
  std::sort(out.begin(), out.end());
  return out;
}

// One to four of the edits libFuzzer's mutators make most often.
std::string mutate(std::string s, std::mt19937& rng) {
  const int edits = 1 + static_cast<int>(rng() % 4);
  static const unsigned char kInteresting[] = {0, 1, 0x7F, 0x80, 0xFF, '9', '-', '\n', '"', ','};
  for (int e = 0; e < edits && !s.empty(); ++e) {
    const size_t at = rng() % s.size();
    switch (rng() % 6) {
      case 0:
        s[at] = static_cast<char>(s[at] ^ (1u << (rng() % 8)));
        break;
      case 1:
        s[at] = static_cast<char>(kInteresting[rng() % sizeof kInteresting]);
        break;
      case 2:
        s.resize(at);
        break;
      case 3:
        s.erase(at, 1 + rng() % 16);
        break;
      case 4:
        s.insert(at, s.substr(rng() % s.size(), 1 + rng() % 32));
        break;
      default: {  // a 32-bit count or size turned huge
        const uint32_t big = (rng() % 2) != 0 ? 0xFFFFFFFFu : 0x7FFFFFFFu;
        if (at + 4 <= s.size()) std::memcpy(&s[at], &big, 4);
      }
    }
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s SEEDS_DIR REGRESSIONS_DIR [MUTANTS_PER_SEED]\n", argv[0]);
    return 2;
  }
  const fs::path seeds = argv[1], regressions = argv[2];
  const int mutants = argc > 3 ? std::atoi(argv[3]) : 100;
  for (int sig : {SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL}) signal(sig, on_crash);
  int missing = 0;
  for (const Target& t : kTargets) {
    finch::fuzz::replay_format() = t.format;
    const auto seed_inputs = read_folder(seeds / t.name);
    const auto fixed_inputs = read_folder(regressions / t.name);
    if (seed_inputs.empty()) {
      std::fprintf(stderr, "fuzz_replay: %s has no seeds in %s\n", t.name, seeds.c_str());
      ++missing;
    }
    auto run = [&](const std::string& label, const std::string& bytes) {
      std::snprintf(g_current, sizeof g_current, "%s: %s", t.name, label.c_str());
      t.entry(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    };
    for (const auto& [path, bytes] : seed_inputs) run(path, bytes);
    for (const auto& [path, bytes] : fixed_inputs) run(path, bytes);
    uint32_t seed = 2166136261u;  // FNV-1a of the name: the same mutants on every machine
    for (const char* c = t.name; *c != '\0'; ++c)
      seed = (seed ^ static_cast<uint8_t>(*c)) * 16777619u;
    std::mt19937 rng(seed);
    for (const auto& [path, bytes] : seed_inputs)
      for (int m = 0; m < mutants; ++m)
        run(path + ", mutant " + std::to_string(m), mutate(bytes, rng));
    std::printf("%-16s %3zu seeds, %2zu fixed crashes, %5zu mutants: ok\n", t.name,
                seed_inputs.size(), fixed_inputs.size(), seed_inputs.size() * mutants);
  }
  return missing == 0 ? 0 : 1;
}
