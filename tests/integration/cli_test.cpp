// End to end through the `finch` executable: train -> eval -> predict on generated images.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "test_support.h"
#include "tiny_run.h"

namespace fs = std::filesystem;
using finch::test::cli;
using finch::test::run_command;

namespace {

const std::string kCliRecipe = finch::test::tiny_recipe("epochs: 5, batch_size: 8, progress: lines",
                                                        "", "schedule: {name: cosine}\n");

class CliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    run_ = new finch::test::TrainedRun("finch-cli", kCliRecipe, 3, 20, 10);
  }
  static void TearDownTestSuite() { delete run_; }
  static fs::path path(const std::string& name) { return run_->path(name); }
  static finch::test::TrainedRun* run_;
};

finch::test::TrainedRun* CliTest::run_ = nullptr;

}  // namespace

TEST_F(CliTest, TrainWritesTheRun) {
  ASSERT_EQ(run_->exit_code, 0) << run_->output;
  EXPECT_TRUE(fs::exists(path("run/best.safetensors")));
  EXPECT_NE(run_->output.find("epoch 5/5"), std::string::npos) << run_->output;
  // A second train into the same folder refuses instead of overwriting.
  auto again = run_command(cli() + " train --config " + path("recipe.yaml").string() + " --out " +
                           path("run").string());
  EXPECT_NE(again.exit_code, 0);
  EXPECT_NE(again.output.find("--resume"), std::string::npos) << again.output;
}

TEST_F(CliTest, EvalJsonBeatsChanceOnTheTestSplit) {
  ASSERT_EQ(run_->exit_code, 0) << run_->output;
  auto result = run_command(cli() + " eval --model " + path("run/best.safetensors").string() +
                            " --dataset imagefolder --root " + path("data").string() +
                            " --split test --json --confusion-csv " +
                            path("confusion.csv").string() + " 2>/dev/null");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  auto j = nlohmann::json::parse(result.output);
  EXPECT_EQ(j["num_samples"], 30);
  EXPECT_GT(j["top1"].get<double>(), 0.6);  // chance is 1/3
  EXPECT_EQ(j["confusion_matrix"].size(), 3u);
  EXPECT_EQ(j["per_class"].size(), 3u);
  EXPECT_TRUE(fs::exists(path("confusion.csv")));
}

TEST_F(CliTest, EvalOnValIsTheTrainersCarve) {
  ASSERT_EQ(run_->exit_code, 0) << run_->output;
  // The generated folder has train/ and test/ only. The recipe carves 20% with seed 1 (the
  // defaults are 10% and 0): eval must take both from the model file.
  const std::string eval =
      cli() + " eval --dtype fp32 --model " + path("run/best.safetensors").string() +
      " --dataset imagefolder --root " + path("data").string() + " --split val --json";
  auto result = run_command(eval + " 2>/dev/null");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  auto j = nlohmann::json::parse(result.output);
  EXPECT_EQ(j["num_samples"], 12);  // 20% of 3 classes x 20
  EXPECT_EQ(j["dataset"]["source"], "carved 20% of 'train' (stratified, seed 1)");
  // The same images the trainer validated on: its best epoch's accuracy, up to one image
  // (the session folds BatchNorm into the convolutions, which may flip a near tie).
  double best_val = 0;
  std::ifstream metrics(path("run/metrics.jsonl"));
  for (std::string line; std::getline(metrics, line);) {
    const auto record = nlohmann::json::parse(line);
    if (record.contains("val_acc")) best_val = std::max(best_val, record["val_acc"].get<double>());
  }
  EXPECT_NEAR(j["top1"].get<double>(), best_val, 1.0 / 12 + 1e-9);

  auto other = run_command(eval + " --option val_fraction=0.5 2>/dev/null");
  ASSERT_EQ(other.exit_code, 0) << other.output;
  EXPECT_EQ(nlohmann::json::parse(other.output)["num_samples"], 30);
  auto none = run_command(eval + " --option val_fraction=0 2>&1");
  EXPECT_NE(none.exit_code, 0);
  EXPECT_NE(none.output.find("--option val_fraction="), std::string::npos) << none.output;
}

TEST_F(CliTest, PredictJsonLinesWithErrorRecords) {
  ASSERT_EQ(run_->exit_code, 0) << run_->output;
  finch::test::write_text(path("inputs/broken.png"), "this is not a png");
  fs::copy_file(path("data/test/class1/img0.png"), path("inputs/good.png"));
  auto result = run_command(cli() + " predict --json --topk 2 --model " +
                            path("run/best.safetensors").string() + " " + path("inputs").string() +
                            " 2>/dev/null");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  std::istringstream lines(result.output);
  std::string line;
  std::vector<nlohmann::json> records;
  while (std::getline(lines, line)) records.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(records.size(), 2u);
  EXPECT_TRUE(records[0].contains("error"));  // broken.png sorts first
  EXPECT_NE(records[0]["path"].get<std::string>().find("broken.png"), std::string::npos);
  ASSERT_EQ(records[1]["topk"].size(), 2u);
  auto top = records[1]["topk"][0];
  EXPECT_TRUE(top.contains("class") && top.contains("index") && top.contains("prob"));
  EXPECT_GE(top["prob"].get<double>(), records[1]["topk"][1]["prob"].get<double>());
}

TEST(Cli, HelpVersionAndErrors) {
  auto help = run_command(cli() + " --help");
  EXPECT_EQ(help.exit_code, 0);
  // Each subcommand as a line of the "Subcommands:" list (the description line also names
  // several of them, so a plain search could not fail).
  const auto list = help.output.find("Subcommands:");
  ASSERT_NE(list, std::string::npos) << help.output;
  for (const char* cmd : {"train", "eval", "predict", "import", "data", "explain", "localize",
                          "report", "embed", "gallery", "search", "serve", "bench"})
    EXPECT_NE(help.output.find(std::string("\n  ") + cmd + " ", list), std::string::npos)
        << cmd << " is not listed:\n"
        << help.output;
  auto train_help = run_command(cli() + " train --help");
  EXPECT_NE(train_help.output.find("--resume"), std::string::npos);
  auto version = run_command(cli() + " --version");
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_NE(version.output.find("finch"), std::string::npos);

  finch::test::TempDir dir;
  finch::test::write_text(dir / "bad.yaml", "train:\n  epoch: 3\n");
  auto bad = run_command(cli() + " train --config " + (dir / "bad.yaml").string() + " --out " +
                         (dir / "run").string());
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.output.find("train.epoch"), std::string::npos) << bad.output;
  EXPECT_NE(bad.output.find("finch: error:"), std::string::npos) << bad.output;

  auto missing = run_command(cli() + " eval --model " + (dir / "bad.yaml").string() +
                             " --dataset idx --root /nonexistent");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.output.find("finch: error:"), std::string::npos) << missing.output;
}

TEST(CliInterrupt, SigintCheckpointsAndResumeFinishes) {
  finch::test::TempDir dir("finch-sigint");
  finch::test::make_pattern_imagefolder(dir / "data", 3, 30, 16, 4);
  finch::test::write_text(dir / "recipe.yaml", kCliRecipe);
  const std::string common = " --set data.root=" + (dir / "data").string();
  // SIGINT once the first epoch is on disk (metrics.jsonl has a line), not after a fixed
  // time: the run is then mid-way through epoch 2 of 400 however fast the machine is.
  const std::string metrics = (dir / "run" / "metrics.jsonl").string();
  auto interrupted = run_command(
      "{ " + cli() + " train --config " + (dir / "recipe.yaml").string() + " --out " +
      (dir / "run").string() + common + " --set train.epochs=400 & pid=$!; " +
      "for i in $(seq 1 6000); do [ -s " + metrics + " ] && break; " +
      "kill -0 $pid 2>/dev/null || break; sleep 0.05; done; kill -INT $pid; wait $pid; }");
  EXPECT_EQ(interrupted.exit_code, 130) << interrupted.output;
  EXPECT_NE(interrupted.output.find("--resume"), std::string::npos) << interrupted.output;
  ASSERT_TRUE(fs::exists(dir / "run" / "checkpoint" / "state.json"));
  auto state = nlohmann::json::parse(std::ifstream(dir / "run" / "checkpoint" / "state.json"));
  EXPECT_GT(state["global_step"].get<int64_t>(), 0);
  // Resume with fewer epochs than the run has done would be a no-op; extend instead.
  auto resumed =
      run_command(cli() + " train --resume " + (dir / "run").string() +
                  " --set train.epochs=" + std::to_string(state["epoch"].get<int64_t>() + 1));
  EXPECT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_TRUE(fs::exists(dir / "run" / "last.safetensors"));
}
