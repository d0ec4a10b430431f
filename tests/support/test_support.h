#pragma once
// Helpers shared by the test suites: scratch folders, running the CLI and the
// python3-torch reference scripts (Debian's /usr/bin/python3, never a user's venv).
#include <filesystem>
#include <functional>
#include <string>

namespace finch::test {

/// A fresh empty folder under the system temp dir, removed when the object dies.
class TempDir {
 public:
  explicit TempDir(const std::string& tag = "finch-test");
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

struct CommandResult {
  int exit_code;
  std::string output;  // stdout and stderr together
};

/// Runs a shell command, capturing its output.
CommandResult run_command(const std::string& command);

/// Runs tests/parity/<script> with Debian's python3 and `args`; fails the test (not skips)
/// when python3-torch is missing. Returns the captured output.
std::string run_python_reference(const std::string& script, const std::string& args);

/// Path of the built `finch` executable.
std::filesystem::path cli_path();
/// cli_path() as a string, to start command lines with.
inline std::string cli() { return cli_path().string(); }

/// Path of the source tree.
std::filesystem::path source_dir();

/// Runs `f` and returns the message of the finch::Error it throws; fails the test if it
/// throws none.
std::string error_of(const std::function<void()>& f);

/// Stops the current test when a fixture helper fails: throws (GoogleTest reports the
/// exception and ends the test), where an ASSERT_* inside a void helper would only return
/// from the helper and let the test go on with a broken fixture.
void require(bool ok, const std::string& what);

/// Writes a text file (creating parent folders).
void write_text(const std::filesystem::path& path, const std::string& text);

}  // namespace finch::test

namespace finch::test {

/// Writes an ImageFolder of `classes` classes x `per_class` PNGs (size x size RGB): each
/// class is a bright square in its own position over random noise, so a small CNN learns
/// it in a few steps. Class folders are named class0, class1, ... Deterministic in `seed`.
void make_pattern_imagefolder(const std::filesystem::path& root, int classes, int per_class,
                              int size, unsigned seed = 0);

}  // namespace finch::test

/// Expects `part` to occur in `text` (a std::string or C string), printing `text` if not.
#define EXPECT_CONTAINS(text, part) \
  EXPECT_NE(std::string(text).find(part), std::string::npos) << (text)
