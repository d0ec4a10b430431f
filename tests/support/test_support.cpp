#include "test_support.h"

#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <random>
#include <stdexcept>

#include "finch/core/error.h"

namespace finch::test {

namespace fs = std::filesystem;

TempDir::TempDir(const std::string& tag) {
  std::random_device rd;
  for (int attempt = 0; attempt < 100; ++attempt) {
    fs::path candidate = fs::temp_directory_path() / (tag + "-" + std::to_string(rd()));
    if (fs::create_directories(candidate)) {
      path_ = candidate;
      return;
    }
  }
  throw std::runtime_error("cannot create a temporary folder");
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

CommandResult run_command(const std::string& command) {
  std::string full = command + " 2>&1";
  FILE* pipe = popen(full.c_str(), "r");
  if (!pipe) return {-1, "popen failed"};
  std::string output;
  std::array<char, 4096> buffer;
  size_t n;
  while ((n = fread(buffer.data(), 1, buffer.size(), pipe)) > 0) output.append(buffer.data(), n);
  int status = pclose(pipe);
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return {code, output};
}

std::string run_python_reference(const std::string& script, const std::string& args) {
  fs::path path = source_dir() / "tests" / "parity" / script;
  CommandResult result = run_command("/usr/bin/python3 " + path.string() + " " + args);
  if (result.exit_code != 0) {
    ADD_FAILURE() << "reference script " << script << " failed (exit " << result.exit_code
                  << "); python3-torch and python3-torchvision are required for parity "
                     "tests (run scripts/install-deps.sh):\n"
                  << result.output;
  }
  return result.output;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const finch::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected finch::Error";
  return "";
}

fs::path cli_path() { return FINCH_CLI_PATH; }
fs::path source_dir() { return FINCH_SOURCE_DIR; }

void require(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error("test fixture failed: " + what);
}

void write_text(const fs::path& path, const std::string& text) {
  if (path.has_parent_path()) fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary);
  out << text;
}

}  // namespace finch::test

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

namespace finch::test {

void make_pattern_imagefolder(const fs::path& root, int classes, int per_class, int size,
                              unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> noise(0, 90), jitter(-1, 1);
  const int square = std::max(2, size / 4);
  for (int c = 0; c < classes; ++c) {
    fs::create_directories(root / ("class" + std::to_string(c)));
    // Square centres spread along the diagonal and the anti-diagonal.
    const int cx =
        (c % 2 == 0) ? (c + 1) * size / (classes + 1) : size - (c + 1) * size / (classes + 1);
    const int cy = (c + 1) * size / (classes + 1);
    for (int i = 0; i < per_class; ++i) {
      cv::Mat image(size, size, CV_8UC3);
      for (int y = 0; y < size; ++y) {
        for (int x = 0; x < size; ++x) {
          image.at<cv::Vec3b>(y, x) = cv::Vec3b(noise(rng), noise(rng), noise(rng));
        }
      }
      const int x0 = std::clamp(cx - square / 2 + jitter(rng), 0, size - square);
      const int y0 = std::clamp(cy - square / 2 + jitter(rng), 0, size - square);
      cv::rectangle(image, cv::Rect(x0, y0, square, square), cv::Scalar(250, 250, 250), cv::FILLED);
      cv::imwrite(
          (root / ("class" + std::to_string(c)) / ("img" + std::to_string(i) + ".png")).string(),
          image);
    }
  }
}

}  // namespace finch::test
