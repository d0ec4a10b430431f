#pragma once
// Helpers for fuzz targets whose parser reads files from a folder (dataset annotations, .mat
// files, IDX): the input is cut into files at kFileSeparator and written under a scratch
// folder that is emptied for every input.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

namespace finch::fuzz {

namespace fs = std::filesystem;

/// The dataset format fuzz_replay is running (it links dataset_fuzz.cpp once for all formats).
inline std::string& replay_format() {
  static std::string format;
  return format;
}

/// Separates the files of one input; also in every dictionary so mutations can add files.
inline constexpr std::string_view kFileSeparator = "\n--finch-fuzz-file--\n";

/// The input cut at kFileSeparator (at most `max_files` pieces; the last keeps the rest).
inline std::vector<std::string> split_files(const uint8_t* data, size_t size, size_t max_files) {
  const std::string_view all(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> pieces;
  size_t begin = 0;
  while (pieces.size() + 1 < max_files) {
    const size_t at = all.find(kFileSeparator, begin);
    if (at == std::string_view::npos) break;
    pieces.emplace_back(all.substr(begin, at - begin));
    begin = at + kFileSeparator.size();
  }
  pieces.emplace_back(all.substr(begin));
  return pieces;
}

/// A per-process folder in /dev/shm (or TMPDIR) that is recreated for every input.
class ScratchRoot {
 public:
  ScratchRoot() {
    const fs::path base =
        fs::is_directory("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
    root_ = base / ("finch-fuzz-" + std::to_string(::getpid()));
  }
  ~ScratchRoot() {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  const fs::path& root() const { return root_; }

  /// Empties the folder, then writes `contents[k]` to `names[k]`; an empty piece means the
  /// file is absent (so the fuzzer also explores missing files).
  void reset(const std::vector<std::string>& names, const std::vector<std::string>& contents) {
    std::error_code ec;
    fs::remove_all(root_, ec);
    fs::create_directories(root_);
    for (size_t k = 0; k < names.size() && k < contents.size(); ++k) {
      if (contents[k].empty()) continue;
      const fs::path file = root_ / names[k];
      fs::create_directories(file.parent_path());
      std::ofstream(file, std::ios::binary) << contents[k];
    }
  }

 private:
  fs::path root_;
};

}  // namespace finch::fuzz
