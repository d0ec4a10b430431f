// Fine-tuning workflows: starting from pretrained weights, freezing backbone stages (weights
// and BatchNorm statistics untouched) and training the head alone on cached features.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "finch/core/config.h"
#include "finch/io/safetensors.h"
#include "finch/models/model.h"
#include "finch/train/freeze.h"
#include "finch/train/trainer.h"
#include "test_support.h"

using finch::Config;
namespace fs = std::filesystem;

namespace {

Config tiny_config(const fs::path& data_root, int epochs) {
  Config c = Config::from_yaml(R"(
seed: 5
threads: 1
data:
  format: imagefolder
  workers: 1
  val_fraction: 0.25
  mean: [0.5, 0.5, 0.5]
  std: [0.25, 0.25, 0.25]
  train_transforms: [{type: hflip, p: 0.5}]
  eval_transforms: []
model: {backbone: resnet20, width: 4, input_size: 16}
train: {batch_size: 8, eval_batch_size: 16, progress: none}
optim: {name: sgd, lr: 0.05}
)",
                               "tiny");
  c.set("data.root", data_root.string());
  c.set("train.epochs", std::to_string(epochs));
  return c;
}

std::map<std::string, torch::Tensor> tensors(const fs::path& file) {
  std::map<std::string, torch::Tensor> out;
  for (auto& [name, t] : finch::io::read_safetensors(file).tensors) out.emplace(name, t);
  return out;
}

class FinetuneTest : public ::testing::Test {
 protected:
  void SetUp() override {
    finch::test::make_pattern_imagefolder(dir_.path() / "data", 3, 12, 16);
    finch::train::run_training(tiny_config(dir_ / "data", 1), dir_ / "base", false);
    base_ = tensors(dir_ / "base" / "last.safetensors");
  }
  finch::test::TempDir dir_;
  std::map<std::string, torch::Tensor> base_;
};

}  // namespace

TEST_F(FinetuneTest, FrozenStagesKeepWeightsAndStatistics) {
  Config config = tiny_config(dir_ / "data", 2);
  config.set("model.pretrained", (dir_ / "base" / "last.safetensors").string());
  config.set("train.freeze", "2");
  finch::train::run_training(config, dir_ / "frozen", false);
  auto tuned = tensors(dir_ / "frozen" / "last.safetensors");
  for (const char* name :
       {"backbone.conv1.weight", "backbone.bn1.running_mean", "backbone.layer1.0.conv1.weight",
        "backbone.layer2.2.bn2.running_var", "backbone.layer2.0.downsample.1.weight"}) {
    EXPECT_TRUE(tuned.at(name).equal(base_.at(name))) << name << " changed although frozen";
  }
  for (const char* name :
       {"backbone.layer3.0.conv1.weight", "backbone.layer3.2.bn2.running_mean", "head.fc.weight"}) {
    EXPECT_FALSE(tuned.at(name).equal(base_.at(name))) << name << " did not train";
  }
}

TEST_F(FinetuneTest, CachedFeaturesTrainOnlyTheHead) {
  Config config = tiny_config(dir_ / "data", 2);
  config.set("model.pretrained", (dir_ / "base" / "last.safetensors").string());
  config.set("train.cache_features", "true");
  config.set("optim.lr", "0.1");
  auto summary = finch::train::run_training(config, dir_ / "cached", false);
  EXPECT_EQ(summary.epochs_completed, 2);
  auto tuned = tensors(dir_ / "cached" / "last.safetensors");
  for (const auto& [name, tensor] : base_) {
    if (name.rfind("backbone.", 0) == 0)
      EXPECT_TRUE(tuned.at(name).equal(tensor)) << name;
    else
      EXPECT_FALSE(tuned.at(name).equal(tensor)) << name;
  }
  const fs::path cache = dir_ / "cached" / "features" / "train.safetensors";
  ASSERT_TRUE(fs::exists(cache));
  auto cached = finch::io::read_safetensors(cache);
  EXPECT_EQ(cached.find("embeddings").size(1), 16);  // resnet20 width 4: 4 x 4 channels
  EXPECT_EQ(cached.find("embeddings").size(0), cached.find("labels").size(0));

  // Resuming for more epochs reuses the cache instead of recomputing it.
  const auto written = fs::last_write_time(cache);
  config.set("train.epochs", "3");
  finch::train::run_training(config, dir_ / "cached", true);
  EXPECT_EQ(fs::last_write_time(cache), written);
}

TEST(Freeze, PlansAreValidated) {
  auto model = finch::models::build_classifier(
      {{"backbone", "resnet18"}, {"head", "linear"}, {"num_classes", 2}});
  auto plan = finch::train::plan_freeze("1", *model->backbone());
  EXPECT_EQ(plan.prefixes,
            (std::vector<std::string>{"backbone.conv1", "backbone.bn1", "backbone.layer1"}));
  EXPECT_TRUE(finch::train::plan_freeze("backbone", *model->backbone()).whole_backbone);
  EXPECT_FALSE(finch::train::plan_freeze("none", *model->backbone()).any());
  EXPECT_CONTAINS(
      finch::test::error_of([&] { finch::train::plan_freeze("5", *model->backbone()); }),
      "the backbone has 4");
  EXPECT_CONTAINS(
      finch::test::error_of([&] { finch::train::plan_freeze("head", *model->backbone()); }),
      "none, backbone or a number");
}
