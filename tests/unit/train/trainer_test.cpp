#include "finch/train/trainer.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>

#include "finch/core/config.h"
#include "finch/core/error.h"
#include "finch/core/interrupt.h"
#include "finch/io/safetensors.h"
#include "finch/models/model_file.h"
#include "test_support.h"

using finch::Config;
namespace fs = std::filesystem;

namespace {

// A tiny but complete recipe: 4 pattern classes of 16x16 images, ResNet-20 of width 4.
Config tiny_config(const fs::path& data_root, int epochs) {
  Config c = Config::from_yaml(R"(
seed: 3
threads: 1
data:
  format: imagefolder
  workers: 2
  val_fraction: 0.25
  mean: [0.5, 0.5, 0.5]
  std: [0.25, 0.25, 0.25]
  train_transforms:
    - {type: hflip, p: 0.5}
  eval_transforms: []
model: {backbone: resnet20, width: 4, dropout: 0.2, input_size: 16}
train: {batch_size: 8, eval_batch_size: 16, progress: none}
optim: {name: sgd, lr: 0.05}
schedule: {name: cosine, warmup_epochs: 0.5}
)",
                               "tiny");
  c.set("data.root", data_root.string());
  c.set("train.epochs", std::to_string(epochs));
  return c;
}

std::vector<std::pair<std::string, torch::Tensor>> weights(const fs::path& model_file) {
  return finch::io::read_safetensors(model_file).tensors;
}

void expect_same_weights(const fs::path& a, const fs::path& b) {
  auto wa = weights(a), wb = weights(b);
  ASSERT_EQ(wa.size(), wb.size());
  for (size_t i = 0; i < wa.size(); ++i) {
    ASSERT_EQ(wa[i].first, wb[i].first);
    EXPECT_TRUE(wa[i].second.equal(wb[i].second)) << wa[i].first;
  }
}

class TrainerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    finch::clear_interrupt();
    finch::test::make_pattern_imagefolder(dir_.path() / "data", 4, 12, 16);
  }
  void TearDown() override { finch::clear_interrupt(); }
  finch::test::TempDir dir_;
};

}  // namespace

TEST_F(TrainerTest, WritesArtifactsAndLearns) {
  Config config = tiny_config(dir_ / "data", 6);
  for (const char* o :
       {"optim.name=adam", "optim.lr=0.003", "optim.weight_decay=0", "model.width=8"}) {
    config.apply_override(o);
  }
  auto summary = finch::train::run_training(config, dir_ / "run", false);
  EXPECT_EQ(summary.epochs_completed, 6);
  EXPECT_FALSE(summary.interrupted);
  for (const char* f :
       {"config.yaml", "metrics.jsonl", "best.safetensors", "last.safetensors",
        "checkpoint/state.json", "checkpoint/optimizer.pt", "checkpoint/model.safetensors"}) {
    EXPECT_TRUE(fs::exists(dir_ / "run" / f)) << f;
  }
  std::ifstream metrics(dir_ / "run" / "metrics.jsonl");
  std::string line;
  int records = 0;
  double first_loss = 0, last_loss = 0;
  while (std::getline(metrics, line)) {
    auto j = nlohmann::json::parse(line);
    for (const char* key : {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr",
                            "img_per_s", "seconds"}) {
      EXPECT_TRUE(j.contains(key)) << key;
    }
    EXPECT_EQ(j["epoch"], ++records);
    (records == 1 ? first_loss : last_loss) = j["train_loss"].get<double>();
  }
  EXPECT_EQ(records, 6);
  EXPECT_LT(last_loss, first_loss);
  EXPECT_GT(summary.best_val_acc, 0.5);  // chance is 0.25
  auto best = finch::models::load_model_file(dir_ / "run" / "best.safetensors");
  EXPECT_EQ(best.info.classes, (std::vector<std::string>{"class0", "class1", "class2", "class3"}));
  EXPECT_EQ(best.info.training["epoch"].get<int64_t>(), summary.best_epoch);
  // The effective config is written and loads as a config again.
  EXPECT_EQ(Config::load(dir_ / "run" / "config.yaml", {}).get<int>("train.epochs"), 6);
}

// train.precision: bf16-mixed learns as fp32 does, while what is stored stays fp32 (the
// master weights); an unknown precision is refused before any work. Autocast's arithmetic
// itself is checked against torch.autocast in TorchvisionParity.Resnet18Bf16AutocastStep.
TEST_F(TrainerTest, Bf16MixedLearnsAndKeepsFp32Weights) {
  Config config = tiny_config(dir_ / "data", 6);
  for (const char* o : {"optim.name=adam", "optim.lr=0.003", "optim.weight_decay=0",
                        "model.width=16", "train.precision=bf16-mixed"}) {
    config.apply_override(o);
  }
  auto summary = finch::train::run_training(config, dir_ / "run", false);
  EXPECT_GT(summary.best_val_acc, 0.5);  // chance is 0.25
  std::ifstream metrics(dir_ / "run" / "metrics.jsonl");
  std::string line;
  int records = 0;
  while (std::getline(metrics, line)) {
    EXPECT_EQ(nlohmann::json::parse(line)["precision"], "bf16-mixed");
    ++records;
  }
  EXPECT_EQ(records, 6);
  for (const auto& [name, tensor] : weights(dir_ / "run" / "best.safetensors"))
    if (tensor.is_floating_point()) EXPECT_EQ(tensor.scalar_type(), torch::kFloat) << name;

  config.apply_override("train.precision=fp16");
  EXPECT_THROW(
      {
        try {
          finch::train::run_training(config, dir_ / "run2", false);
        } catch (const finch::Error& e) {
          EXPECT_NE(std::string(e.what()).find("fp32 or bf16-mixed"), std::string::npos)
              << e.what();
          throw;
        }
      },
      finch::Error);
  EXPECT_FALSE(fs::exists(dir_ / "run2" / "config.yaml"));
}

TEST_F(TrainerTest, ResumeAfterInterruptGivesTheSameWeights) {
  Config config = tiny_config(dir_ / "data", 2);
  finch::train::run_training(config, dir_ / "straight", false);

  // Interrupt in the middle of epoch 1 (step 3 of 4), then resume to the end.
  finch::train::TrainHooks hooks;
  hooks.on_step = [](const finch::train::TrainState& s, finch::models::Classifier&) {
    if (s.global_step == 3) finch::request_interrupt();
  };
  auto first = finch::train::run_training(config, dir_ / "resumed", false, hooks);
  EXPECT_TRUE(first.interrupted);
  EXPECT_FALSE(fs::exists(dir_ / "resumed" / "last.safetensors"));
  finch::clear_interrupt();
  auto resumed = finch::train::run_training(Config::load(dir_ / "resumed" / "config.yaml", {}),
                                            dir_ / "resumed", true);
  EXPECT_EQ(resumed.epochs_completed, 2);
  expect_same_weights(dir_ / "straight" / "last.safetensors",
                      dir_ / "resumed" / "last.safetensors");

  // 1 epoch + resume + 1 epoch: interrupt exactly at the end of epoch 1.
  hooks.on_step = [](const finch::train::TrainState& s, finch::models::Classifier&) {
    if (s.global_step == 4) finch::request_interrupt();
  };
  finch::train::run_training(config, dir_ / "epochwise", false, hooks);
  finch::clear_interrupt();
  finch::train::run_training(config, dir_ / "epochwise", true);
  expect_same_weights(dir_ / "straight" / "last.safetensors",
                      dir_ / "epochwise" / "last.safetensors");
  // Metrics of the resumed run hold each epoch exactly once.
  std::ifstream metrics(dir_ / "epochwise" / "metrics.jsonl");
  std::string line;
  int records = 0;
  while (std::getline(metrics, line)) EXPECT_EQ(nlohmann::json::parse(line)["epoch"], ++records);
  EXPECT_EQ(records, 2);
}

TEST_F(TrainerTest, NanLossStopsWithTheStep) {
  Config config = tiny_config(dir_ / "data", 2);
  finch::train::TrainHooks hooks;
  hooks.on_step = [](const finch::train::TrainState& s, finch::models::Classifier& model) {
    if (s.global_step == 2) {
      torch::NoGradGuard no_grad;
      model->parameters().front().fill_(std::numeric_limits<float>::quiet_NaN());
    }
  };
  try {
    finch::train::run_training(config, dir_ / "run", false, hooks);
    FAIL() << "expected the NaN loss to stop training";
  } catch (const finch::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("nan"), std::string::npos) << msg;
    EXPECT_NE(msg.find("global step 3"), std::string::npos) << msg;
  }
}

TEST_F(TrainerTest, ResumeWithoutCheckpointIsAnError) {
  Config config = tiny_config(dir_ / "data", 1);
  EXPECT_THROW(finch::train::run_training(config, dir_ / "empty", true), finch::Error);
}

TEST_F(TrainerTest, ClassCountMismatchIsAnError) {
  Config config = tiny_config(dir_ / "data", 1);
  config.set("model.num_classes", "7");
  EXPECT_THROW(finch::train::run_training(config, dir_ / "run", false), finch::Error);
}

TEST_F(TrainerTest, DamagedCheckpointIsDetectedAndNamed) {
  Config config = tiny_config(dir_ / "data", 1);
  finch::train::run_training(config, dir_ / "run", false);
  auto state = nlohmann::json::parse(std::ifstream(dir_ / "run" / "checkpoint" / "state.json"));
  ASSERT_TRUE(state.contains("sha256"));
  for (const char* f : {"model.safetensors", "optimizer.pt"})
    EXPECT_EQ(state["sha256"][f].get<std::string>().size(), 64u) << f;
  // Flip one byte at the end of the weights: same size, still a valid safetensors file, so
  // only the checksum can tell.
  const fs::path weights_file = dir_ / "run" / "checkpoint" / "model.safetensors";
  {
    std::fstream f(weights_file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(-1, std::ios::end);
    const char c = static_cast<char>(f.get() ^ 0x40);
    f.seekp(-1, std::ios::end);
    f.put(c);
  }
  ASSERT_NO_THROW(finch::io::read_safetensors(weights_file));
  config.set("train.epochs", "2");
  try {
    finch::train::run_training(config, dir_ / "run", true);
    FAIL() << "expected the damaged checkpoint to be refused";
  } catch (const finch::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(weights_file.string()), std::string::npos) << msg;
    EXPECT_NE(msg.find("damaged"), std::string::npos) << msg;
    EXPECT_NE(msg.find("model.pretrained=" + (dir_ / "run" / "last.safetensors").string()),
              std::string::npos)
        << msg;
  }
  // The advice works: a new run starts from last.safetensors.
  Config restart = Config::load(dir_ / "run" / "config.yaml", {});
  restart.set_string("model.pretrained", (dir_ / "run" / "last.safetensors").string());
  restart.set("train.epochs", "1");
  EXPECT_EQ(finch::train::run_training(restart, dir_ / "restart", false).epochs_completed, 1);
}

// The steppable trainer: driving train_epoch by hand gives run()'s weights; after_backward sees
// every step's gradients; validate() evaluates the carved validation split.
TEST_F(TrainerTest, SteppedByHandEqualsRun) {
  Config config = tiny_config(dir_ / "data", 2);
  finch::train::run_training(config, dir_ / "whole", false);

  int64_t backward_calls = 0;
  finch::train::TrainHooks hooks;
  hooks.after_backward = [&](finch::models::Classifier& model) {
    ++backward_calls;
    for (const auto& p : model->parameters())
      if (p.requires_grad()) EXPECT_TRUE(p.grad().defined());
  };
  finch::train::Trainer trainer(config, dir_ / "stepped", false, hooks);
  EXPECT_TRUE(trainer.is_writer());
  EXPECT_EQ(trainer.steps_per_epoch(), 4);  // 36 train images, batch 8, drop_last
  while (trainer.state().epoch < 2) ASSERT_TRUE(trainer.train_epoch());
  EXPECT_EQ(backward_calls, 8);
  EXPECT_EQ(trainer.state().global_step, 8);
  expect_same_weights(dir_ / "whole" / "last.safetensors", dir_ / "stepped" / "last.safetensors");
  const auto val = trainer.validate();
  EXPECT_EQ(val.num_samples, 12);
}
