// Crash consistency of the run folder on hostile file systems: a disk that fills up while a
// model file or a checkpoint is written, and a run folder that is read-only or missing.
// The file systems are real: a tmpfs of a chosen size, mounted by the test in a private
// mount namespace (`unshare`), so nothing outside the test sees it and it vanishes with it.
#include <gtest/gtest.h>

#include <fstream>

#include "test_support.h"
#include "tiny_run.h"

namespace fs = std::filesystem;
using finch::test::cli;
using finch::test::run_command;

namespace {

// Runs `script` with bash as root of a new user + mount namespace (works unprivileged where
// user namespaces are enabled, and as root).
finch::test::CommandResult in_mount_namespace(const fs::path& script_file,
                                              const std::string& script) {
  finch::test::write_text(script_file, "set -u\n" + script);
  return run_command("unshare --user --map-root-user --mount bash " + script_file.string());
}

bool can_mount_tmpfs() {
  finch::test::TempDir dir("finch-mount-probe");
  return in_mount_namespace(dir / "probe.sh",
                            "mount -t tmpfs -o size=1m tmpfs " + dir.path().string() + " && exit 7")
             .exit_code == 7;
}

#define REQUIRE_MOUNTS()                                                                      \
  if (!can_mount_tmpfs())                                                                     \
  GTEST_SKIP() << "this machine does not allow `unshare --user --mount` + tmpfs mounts; the " \
                  "full-disk and read-only checks cannot run here"

const std::string kReliabilityRecipe = finch::test::tiny_recipe("epochs: 1, batch_size: 8, progress: none");

class FullDisk : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new finch::test::TempDir("finch-full-disk");
    finch::test::make_pattern_imagefolder(dir_->path() / "data" / "train", 3, 12, 16, 1);
    finch::test::write_text(dir_->path() / "recipe.yaml", kReliabilityRecipe);
    auto trained = run_command(
        cli() + " train --config " + (dir_->path() / "recipe.yaml").string() + " --out " +
        (dir_->path() / "run").string() + " --set data.root=" + (dir_->path() / "data").string());
    train_ok_ = trained.exit_code == 0;
  }
  static void TearDownTestSuite() { delete dir_; }

  // Copies the 1-epoch run onto a tmpfs with `margin_kb` free, resumes it for 2 more epochs
  // (which must fail), then checks the previous artifacts and resumes again with room.
  // Returns the failed run's output; fills `after` with what the script saw.
  // `kept`: the files that must be unchanged (a model file written before the disk filled up
  // legitimately changes).
  std::string fill_up(int margin_kb, const std::string& tag, const std::vector<std::string>& kept) {
    const fs::path work = dir_->path() / tag, mnt = work / "mnt";
    fs::create_directories(mnt);
    const std::string run = (mnt / "run").string(), w = work.string();
    std::string files;
    for (const auto& f : kept) files += run + "/" + f + " ";
    auto result = in_mount_namespace(
        work / "script.sh",
        "mount -t tmpfs -o size=64m tmpfs " + mnt.string() + " || exit 90\n" + "cp -a " +
            (dir_->path() / "run").string() + " " + run + "\n" + "used=$(df -k --output=used " +
            mnt.string() + " | tail -1)\n" + "mount -o remount,size=$((used + " +
            std::to_string(margin_kb) + "))k " + mnt.string() + " || exit 91\n" + "sha256sum " +
            files + " > " + w + "/before.sha\n" + cli() + " train --resume " + run +
            " --set train.epochs=3 > " + w + "/full.log 2>&1; echo $? > " + w + "/full.rc\n" +
            "sha256sum " + files + " > " + w + "/after.sha\n" + "ls -A " + run + " > " + w +
            "/ls.txt\n" + cli() + " eval --model " + run +
            "/last.safetensors --dataset imagefolder --root " +
            (dir_->path() / "data" / "train").string() + " --split train --json > " + w +
            "/eval.log 2>&1; echo $? > " + w + "/eval.rc\n" + "mount -o remount,size=64m " +
            mnt.string() + " || exit 92\n" + cli() + " train --resume " + run +
            " --set train.epochs=3 > " + w + "/resume.log 2>&1; echo $? > " + w + "/resume.rc\n");
    finch::test::require(result.exit_code == 0, "mount script failed: " + result.output);
    auto read = [&](const std::string& name) {
      std::ifstream in(work / name);
      return std::string(std::istreambuf_iterator<char>(in), {});
    };
    EXPECT_NE(read("full.rc"), "0\n") << read("full.log");
    EXPECT_EQ(read("before.sha"), read("after.sha")) << "previous artifacts changed";
    EXPECT_EQ(read("ls.txt").find(".tmp-"), std::string::npos) << read("ls.txt");
    EXPECT_EQ(read("ls.txt").find("checkpoint.new"), std::string::npos) << read("ls.txt");
    EXPECT_EQ(read("eval.rc"), "0\n") << read("eval.log");
    EXPECT_EQ(read("resume.rc"), "0\n") << read("resume.log");
    EXPECT_CONTAINS(read("resume.log"), "epoch 3/3");
    return read("full.log");
  }

  static finch::test::TempDir* dir_;
  static bool train_ok_;
};

finch::test::TempDir* FullDisk::dir_ = nullptr;
bool FullDisk::train_ok_ = false;

}  // namespace

// Too little room for even a model file: last.safetensors fails first.
TEST_F(FullDisk, WhileWritingAModelFile) {
  REQUIRE_MOUNTS();
  ASSERT_TRUE(train_ok_);
  const std::string log =
      fill_up(8, "model",
              {"last.safetensors", "best.safetensors", "checkpoint/model.safetensors",
               "checkpoint/optimizer.pt", "checkpoint/state.json"});
  EXPECT_CONTAINS(log, "cannot write");
  EXPECT_CONTAINS(log, "last.safetensors");
  EXPECT_CONTAINS(log, "the disk is full");
  EXPECT_CONTAINS(log, "is unchanged");
}

// Room for the model files but not for a second checkpoint next to the current one.
TEST_F(FullDisk, WhileWritingACheckpoint) {
  REQUIRE_MOUNTS();
  ASSERT_TRUE(train_ok_);
  const auto model_kb =
      static_cast<int>(fs::file_size(dir_->path() / "run" / "last.safetensors") / 1024);
  const std::string log =
      fill_up(model_kb * 3 / 2 + 12, "checkpoint",
              {"checkpoint/model.safetensors", "checkpoint/optimizer.pt", "checkpoint/state.json"});
  EXPECT_CONTAINS(log, "checkpoint.new");
  EXPECT_CONTAINS(log, "the disk is full");
  EXPECT_CONTAINS(log, "is intact");
}

TEST(RunFolder, ReadOnlyOrMissingFailsBeforeAnyWork) {
  REQUIRE_MOUNTS();
  finch::test::TempDir dir("finch-readonly");
  finch::test::make_pattern_imagefolder(dir / "data", 3, 8, 16, 1);
  finch::test::write_text(dir / "recipe.yaml", kReliabilityRecipe);
  const std::string common = " --set data.root=" + (dir / "data").string();
  ASSERT_EQ(run_command(cli() + " train --config " + (dir / "recipe.yaml").string() + " --out " +
                        (dir / "run").string() + common)
                .exit_code,
            0);
  const fs::path mnt = dir / "mnt";
  fs::create_directories(mnt);
  const std::string w = dir.path().string();
  auto result = in_mount_namespace(
      dir / "script.sh", "mount -t tmpfs -o size=16m tmpfs " + mnt.string() + " || exit 90\n" +
                             "cp -a " + (dir / "run").string() + " " + mnt.string() + "/run\n" +
                             "mount -o remount,ro " + mnt.string() + " || exit 91\n" + cli() +
                             " train --config " + (dir / "recipe.yaml").string() + " --out " +
                             mnt.string() + "/new" + common + " > " + w +
                             "/new.log 2>&1; echo $? > " + w + "/new.rc\n" + cli() +
                             " train --resume " + mnt.string() + "/run --set train.epochs=2 > " +
                             w + "/resume.log 2>&1; echo $? > " + w + "/resume.rc\n");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  auto read = [&](const std::string& name) {
    std::ifstream in(dir / name);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  EXPECT_EQ(read("new.rc"), "1\n") << read("new.log");
  EXPECT_CONTAINS(read("new.log"), "cannot create the run folder");
  EXPECT_CONTAINS(read("new.log"), "Read-only file system");
  EXPECT_EQ(read("resume.rc"), "1\n") << read("resume.log");
  EXPECT_CONTAINS(read("resume.log"), "cannot write to the run folder");
  // Refused at the start: no data was read, no epoch began.
  EXPECT_EQ(read("resume.log").find("train /"), std::string::npos) << read("resume.log");

  auto missing = run_command(cli() + " train --resume " + (dir / "nowhere").string());
  EXPECT_EQ(missing.exit_code, 2);  // a usage error
  EXPECT_CONTAINS(missing.output, "does not exist");
}
