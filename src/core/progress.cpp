#include "finch/core/progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>

#include "finch/core/error.h"

namespace finch {

ProgressStyle parse_progress_style(const std::string& text) {
  if (text == "auto") return ProgressStyle::kAuto;
  if (text == "bar") return ProgressStyle::kBar;
  if (text == "lines") return ProgressStyle::kLines;
  if (text == "none") return ProgressStyle::kNone;
  throw Error("unknown progress style '" + text + "' (auto, bar, lines, none)");
}

std::string format_duration(double seconds) {
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  if (s >= 3600) return fmt::format("{}h{:02}m", s / 3600, (s % 3600) / 60);
  if (s >= 60) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

Progress::Progress(std::string label, int64_t total, ProgressStyle style)
    : label_(std::move(label)),
      total_(total),
      start_(std::chrono::steady_clock::now()),
      last_print_(start_) {
  if (style == ProgressStyle::kAuto)
    style = ::isatty(2) ? ProgressStyle::kBar : ProgressStyle::kLines;
  bar_ = style == ProgressStyle::kBar;
  enabled_ = style != ProgressStyle::kNone;
}

void Progress::update(int64_t done, const std::string& status) {
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  const double since_print = std::chrono::duration<double>(now - last_print_).count();
  // A bar redraws at most 10 times a second; plain lines every 30 seconds.
  if (since_print < (bar_ ? 0.1 : 30.0) && done < total_) return;
  last_print_ = now;
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double fraction = total_ > 0 ? static_cast<double>(done) / total_ : 1.0;
  const std::string eta =
      done > 0 ? format_duration(elapsed / done * (total_ - done)) : std::string("?");
  if (bar_) {
    constexpr int kWidth = 24;
    const int filled = static_cast<int>(fraction * kWidth);
    std::string bar(filled, '#');
    bar.resize(kWidth, '.');
    std::fprintf(stderr, "\r%s [%s] %lld/%lld %s eta %s\033[K", label_.c_str(), bar.c_str(),
                 static_cast<long long>(done), static_cast<long long>(total_), status.c_str(),
                 eta.c_str());
  } else {
    std::fprintf(stderr, "%s %lld/%lld (%.0f%%) %s eta %s\n", label_.c_str(),
                 static_cast<long long>(done), static_cast<long long>(total_), 100 * fraction,
                 status.c_str(), eta.c_str());
  }
  std::fflush(stderr);
}

void Progress::finish(const std::string& status) {
  if (!enabled_) return;
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  if (bar_) std::fprintf(stderr, "\r\033[K");
  std::fprintf(stderr, "%s done in %s %s\n", label_.c_str(), format_duration(elapsed).c_str(),
               status.c_str());
  std::fflush(stderr);
}

}  // namespace finch
