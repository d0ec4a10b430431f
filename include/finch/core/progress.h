#pragma once
// Progress for long loops: a redrawn one-line bar on a terminal, plain periodic lines
// otherwise (logs, CI), or nothing.
#include <chrono>
#include <cstdint>
#include <string>

namespace finch {

enum class ProgressStyle { kAuto, kBar, kLines, kNone };

/// Parses auto|bar|lines|none; throws finch::Error otherwise.
ProgressStyle parse_progress_style(const std::string& text);

class Progress {
 public:
  Progress(std::string label, int64_t total, ProgressStyle style);
  /// Reports `done` of `total` units, with extra text such as "loss 0.31 acc 0.88".
  void update(int64_t done, const std::string& status);
  /// Ends the bar (newline on a terminal).
  void finish(const std::string& status);

 private:
  std::string label_;
  int64_t total_;
  bool bar_ = false, enabled_ = true;
  std::chrono::steady_clock::time_point start_, last_print_;
};

/// Formats seconds as "1h02m", "3m05s" or "12s".
std::string format_duration(double seconds);

}  // namespace finch
