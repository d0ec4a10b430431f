// Every head and stage block trains on the shipped demo recipe (configs/fashion_mnist.yaml:
// SGD with Nesterov momentum at lr 0.2, one-cycle) with nothing changed but the method, the
// data (generated pattern images of 5 classes at 28 px) and the batch size (32, for a few
// hundred steps in seconds). Before per-head gradient clipping, bilinear scaling and stage
// lists counted from the end, self_attention and WS-DAN diverged to chance on this recipe and
// CBAM did not build on ResNet-20. Also: a run that does not learn is reported, and `finch tune
// lr` on the same recipe.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "test_support.h"
#include "tiny_run.h"

namespace ft = finch::test;
namespace fs = std::filesystem;

namespace {

constexpr int kClasses = 5;

class MethodsTrain : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    data_ = new ft::TempDir("methods-data");
    ft::make_pattern_imagefolder(data_->path() / "train", kClasses, 300, 28, 3);
  }
  static void TearDownTestSuite() {
    delete data_;
    data_ = nullptr;
  }

  // Trains 3 epochs of 42 steps and returns the epoch records of metrics.jsonl.
  static std::vector<nlohmann::json> train(const std::string& tag, const std::string& sets) {
    ft::TempDir run(tag);
    const fs::path out = run.path() / "run";
    const auto result = ft::run_command(
        ft::cli_path().string() + " train --config " +
        (ft::source_dir() / "configs" / "fashion_mnist.yaml").string() + " --out " + out.string() +
        " --set data.format=imagefolder --set data.root=" + data_->path().string() +
        " --set train.epochs=3 --set train.batch_size=32 --set train.progress=none"
        " --set threads=1 --set data.workers=1 --set data.mean=[0.5,0.5,0.5]"
        " --set data.std=[0.25,0.25,0.25] " +
        sets);
    EXPECT_EQ(result.exit_code, 0) << result.output;
    std::ifstream in(out / "metrics.jsonl");
    std::vector<nlohmann::json> records;
    for (std::string line; std::getline(in, line);)
      if (!line.empty()) records.push_back(nlohmann::json::parse(line));
    EXPECT_EQ(records.size(), 3u) << result.output;
    return records;
  }

  static void expect_learns(const std::string& tag, const std::string& sets) {
    const auto records = train(tag, sets);
    if (records.empty()) return;
    // Chance is 0.2; every method reaches 0.9 or more on these images when it trains.
    EXPECT_GE(records.back().value("val_acc", 0.0), 0.6) << sets << ": " << records.back().dump();
    for (const auto& record : records) EXPECT_FALSE(record.contains("warning")) << record.dump();
  }

  static ft::TempDir* data_;
};

ft::TempDir* MethodsTrain::data_ = nullptr;

}  // namespace

TEST_F(MethodsTrain, LinearHead) { expect_learns("m-linear", "--set model.head=linear"); }
TEST_F(MethodsTrain, CosineHead) { expect_learns("m-cosine", "--set model.head=cosine"); }
TEST_F(MethodsTrain, BilinearHead) { expect_learns("m-bilinear", "--set model.head=bilinear"); }
TEST_F(MethodsTrain, WsdanHead) { expect_learns("m-wsdan", "--set model.head=wsdan"); }
TEST_F(MethodsTrain, SelfAttentionHead) {
  expect_learns("m-attn", "--set model.head=self_attention");
}
TEST_F(MethodsTrain, PimHead) {
  // Token width 64 instead of 256: on ResNet-20's 16-channel, 28 x 28 first stage the default
  // width makes the head 6x the backbone's cost; the selection and graph layer are the same.
  expect_learns("m-pim", "--set model.head=pim --set model.pim.dim=64");
}
TEST_F(MethodsTrain, CbamBlocksOnTheLastTwoStages) {
  // The default stages [-2, -1] exist on ResNet-20's three stages.
  expect_learns("m-cbam", "--set model.attention.type=cbam");
}
TEST_F(MethodsTrain, SeBlocks) { expect_learns("m-se", "--set model.attention.type=se"); }

TEST_F(MethodsTrain, ARunThatDoesNotLearnIsReported) {
  // A learning rate too small to move the weights: the training accuracy stays at chance and
  // every epoch's record says what to try (train/health.h; its thresholds are unit-tested).
  const auto records = train("m-stuck", "--set optim.lr=1e-9 --set model.head=linear");
  ASSERT_FALSE(records.empty());
  for (const auto& record : records) {
    ASSERT_TRUE(record.contains("warning")) << record.dump();
    EXPECT_NE(record["warning"].get<std::string>().find("at chance"), std::string::npos);
  }
}

TEST_F(MethodsTrain, TuneLrSuggestsARateAndDrawsTheCurve) {
  ft::TempDir run("m-tune");
  const auto result = ft::run_command(
      ft::cli_path().string() + " tune lr --config " +
      (ft::source_dir() / "configs" / "fashion_mnist.yaml").string() + " --out " +
      (run.path() / "tune").string() + " --steps 60 --json --set data.format=imagefolder" +
      " --set data.root=" + data_->path().string() +
      " --set train.batch_size=32 --set threads=1 --set data.workers=1");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const auto lines = ft::json_lines(result.output);
  ASSERT_EQ(lines.size(), 1u) << result.output;
  const auto& json = lines.front();
  const double lr = json["suggested_lr"].get<double>();
  EXPECT_GT(lr, 1e-6);
  EXPECT_LT(lr, 10.0);
  EXPECT_GE(json["points"].size(), 10u);
  EXPECT_TRUE(fs::file_size(run.path() / "tune" / "lr_range.png") > 1000);
  EXPECT_TRUE(fs::exists(run.path() / "tune" / "lr_range.json"));
}
