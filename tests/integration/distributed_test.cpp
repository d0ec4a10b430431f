// Data-parallel training end to end: real rank processes on loopback, started by
// `finch train --nproc`, by torchrun (python3-torch's launcher) and by hand with torchrun's
// environment variables.
#include "finch/train/distributed.h"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "finch/io/safetensors.h"
#include "test_support.h"
#include "tiny_run.h"

namespace fs = std::filesystem;
using finch::test::cli;
using finch::test::run_command;

namespace {

std::vector<nlohmann::json> metrics_of(const fs::path& run) {
  std::ifstream in(run / "metrics.jsonl");
  std::stringstream text;
  text << in.rdbuf();
  return finch::test::json_lines(text.str());
}

// Every tensor of two safetensors files, by name and order, within rtol / atol (compared in
// float64); the largest difference is printed for the one that is not.
void expect_same_tensors(const fs::path& file_a, const fs::path& file_b, double rtol, double atol) {
  auto a = finch::io::read_safetensors(file_a).tensors;
  auto b = finch::io::read_safetensors(file_b).tensors;
  ASSERT_EQ(a.size(), b.size()) << file_a << " vs " << file_b;
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].first, b[i].first);
    const auto x = a[i].second.to(torch::kDouble), y = b[i].second.to(torch::kDouble);
    EXPECT_TRUE(torch::allclose(x, y, rtol, atol))
        << file_a.filename() << " " << a[i].first << " differs by "
        << (x - y).abs().max().item<double>();
  }
}

// torchrun with 2 local ranks; each launch gets its own free port (torchrun's default, 29500,
// would collide when ctest runs two of these tests at once). Debian's torchrun 1.13 on Python
// 3.11 cannot parse its own default "--redirects 0 --tee 0" (IntFlag iteration changed), hence
// -r 2 -t 2.
std::string torchrun(const std::string& extra = "") {
  return "/usr/bin/torchrun --nproc_per_node 2 --master_port " +
         std::to_string(finch::train::free_loopback_port()) + " " + extra +
         " -r 2 -t 2 --no_python ";
}

class DistributedTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new finch::test::TempDir("finch-dist");
    finch::test::make_pattern_imagefolder(dir_->path() / "data" / "train", 4, 12, 16, 2);
    // SGD, no dropout, every BatchNorm frozen (eval mode): the update then depends on the
    // global batch only, so 2 ranks x 4 must equal 1 process x 8.
    finch::test::write_text(
        dir_->path() / "recipe.yaml",
        finch::test::tiny_recipe("epochs: 3, batch_size: 4, progress: none, freeze: backbone",
                                 "  root: " + (dir_->path() / "data").string() + "\n"));
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string recipe() { return (dir_->path() / "recipe.yaml").string(); }
  static fs::path dir() { return dir_->path(); }
  static finch::test::TempDir* dir_;
};
finch::test::TempDir* DistributedTest::dir_ = nullptr;

}  // namespace

TEST_F(DistributedTest, TwoRanksEqualOneProcessOnTheGlobalBatch) {
  const fs::path one = dir() / "one", two = dir() / "two";
  auto single = run_command(cli() + " train --config " + recipe() + " --out " + one.string() +
                            " --set train.batch_size=8 --set optim.name=sgd --set optim.lr=0.05");
  ASSERT_EQ(single.exit_code, 0) << single.output;
  auto parallel = run_command(cli() + " train --nproc 2 --config " + recipe() + " --out " +
                              two.string() + " --set optim.name=sgd --set optim.lr=0.05");
  ASSERT_EQ(parallel.exit_code, 0) << parallel.output;
  EXPECT_CONTAINS(parallel.output, "data parallel over 2 ranks: global batch 8 (2 x 4)");
  // Rank 0 alone reports and writes.
  size_t reports = 0;
  for (size_t at = 0; (at = parallel.output.find("trained 3 epochs", at)) != std::string::npos;
       ++at)
    ++reports;
  EXPECT_EQ(reports, 1u) << parallel.output;

  // float32: a mean of two half-batch means vs one mean differ by rounding only.
  expect_same_tensors(one / "last.safetensors", two / "last.safetensors", 0, 1e-6);
  // Sharded validation merged over ranks counts every image once: the same figures.
  auto ma = metrics_of(one), mb = metrics_of(two);
  ASSERT_EQ(ma.size(), 3u);
  ASSERT_EQ(mb.size(), 3u);
  for (size_t e = 0; e < 3; ++e) {
    EXPECT_EQ(ma[e]["val_acc"], mb[e]["val_acc"]) << e;
    EXPECT_NEAR(ma[e]["val_loss"].get<double>(), mb[e]["val_loss"].get<double>(), 1e-5) << e;
    EXPECT_NEAR(ma[e]["train_loss"].get<double>(), mb[e]["train_loss"].get<double>(), 1e-5) << e;
    EXPECT_EQ(ma[e]["train_acc"], mb[e]["train_acc"]) << e;
  }
}

// train.sync_bn: with BatchNorms training, 2 ranks x 4 with global-batch statistics equal one
// process x 8 (the model is narrow, so both run NCHW; see channels_last_is_safe).
TEST_F(DistributedTest, SyncBatchNormTwoRanksEqualOneProcess) {
  const fs::path one = dir() / "sync_one", two = dir() / "sync_two";
  auto single =
      run_command(cli() + " train --config " + recipe() + " --out " + one.string() +
                  " --set train.freeze=none --set train.batch_size=8 --set optim.name=sgd");
  ASSERT_EQ(single.exit_code, 0) << single.output;
  auto parallel =
      run_command(cli() + " train --nproc 2 --config " + recipe() + " --out " + two.string() +
                  " --set train.freeze=none --set train.sync_bn=true --set optim.name=sgd");
  ASSERT_EQ(parallel.exit_code, 0) << parallel.output;
  EXPECT_CONTAINS(parallel.output,
                  "SyncBatchNorm: 21 BatchNorm layers use global-batch statistics");
  // float32 statistics summed in another order, 3 epochs of SGD (Adam would magnify the
  // rounding of near-zero gradients into lr-sized steps).
  expect_same_tensors(one / "last.safetensors", two / "last.safetensors", 1e-5, 1e-5);
}

// torchrun --no_python, the documented launcher.
TEST_F(DistributedTest, TorchrunLaunchesTheRanks) {
  const fs::path run = dir() / "torchrun";
  auto result = run_command(torchrun() + cli() + " train --config " + recipe() + " --out " +
                            run.string() + " --set train.epochs=2");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_CONTAINS(result.output, "global batch 8 (2 x 4)");
  EXPECT_EQ(metrics_of(run).size(), 2u);
  ASSERT_TRUE(fs::exists(run / "best.safetensors"));

  // finch eval under torchrun: each rank its shard, rank 0 prints the merged metrics, which
  // equal one process's.
  const std::string eval = cli() + " eval --model " + (run / "best.safetensors").string() +
                           " --dataset imagefolder --root " + (dir() / "data").string() +
                           " --split train --json --batch-size 5";
  auto one = run_command(eval + " 2>/dev/null");
  auto two = run_command(torchrun() + eval + " 2>/dev/null");
  ASSERT_EQ(one.exit_code, 0) << one.output;
  ASSERT_EQ(two.exit_code, 0) << two.output;
  auto a = finch::test::json_lines(one.output), b = finch::test::json_lines(two.output);
  ASSERT_EQ(a.size(), 1u) << one.output;
  ASSERT_EQ(b.size(), 1u) << two.output;  // rank 0 alone reports
  EXPECT_EQ(b[0]["num_samples"], 48);
  for (const char* key : {"num_samples", "top1", "top5", "mean_class_accuracy", "confusion_matrix"})
    EXPECT_EQ(a[0][key], b[0][key]) << key;
  EXPECT_NEAR(a[0]["loss"].get<double>(), b[0]["loss"].get<double>(), 1e-12);

  // finch embed and gallery build under torchrun: the ranks share the split, rank 0 writes
  // what one process writes (rows in dataset order).
  const std::string source = " --model " + (run / "best.safetensors").string() +
                             " --dataset imagefolder --root " + (dir() / "data").string() +
                             " --split train --batch-size 5";
  const std::string launch = torchrun();
  for (const std::string& how : {std::string(), launch}) {
    const std::string tag = how.empty() ? "one" : "two";
    auto embedded = run_command(how + cli() + " embed" + source + " --out " +
                                (dir() / ("emb_" + tag + ".safetensors")).string());
    ASSERT_EQ(embedded.exit_code, 0) << embedded.output;
    auto built = run_command(how + cli() + " gallery build" + source + " --out " +
                             (dir() / ("gal_" + tag + ".safetensors")).string());
    ASSERT_EQ(built.exit_code, 0) << built.output;
  }
  for (const char* kind : {"emb_", "gal_"}) {
    const fs::path x_file = dir() / (std::string(kind) + "one.safetensors"),
                   y_file = dir() / (std::string(kind) + "two.safetensors");
    expect_same_tensors(x_file, y_file, 1e-5, 1e-6);
    auto x = finch::io::read_safetensors(x_file), y = finch::io::read_safetensors(y_file);
    EXPECT_EQ(x.metadata, y.metadata) << kind;  // paths, classes, model hash
  }
}

// A rank killed with SIGKILL mid-run: the other stops with a message naming what failed and
// where each rank was, exits non-zero, and the run folder resumes on one process.
TEST_F(DistributedTest, AKilledRankStopsTheOtherAndTheRunResumesOnOneProcess) {
  const fs::path run = dir() / "killed";
  const std::string env =
      "WORLD_SIZE=2 LOCAL_WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port ";
  const std::string train = cli() + " train --config " + recipe() + " --out " + run.string() +
                            " --set train.epochs=400 --set train.dist_timeout_s=60";
  // The kill waits for the first checkpoint (a deterministic trigger, not a sleep).
  auto result = run_command(
      "exec 2>&1; port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); "
      "s.bind((\"127.0.0.1\", 0)); "
      "print(s.getsockname()[1])'); cd " +
      dir().string() + " && " + env + "RANK=1 LOCAL_RANK=1 " + train +
      " > rank1.log 2>&1 & p1=$!; " + env + "RANK=0 LOCAL_RANK=0 " + train +
      " > rank0.log 2>&1 & p0=$!; " + "while [ ! -f " +
      (run / "checkpoint" / "state.json").string() +
      " ] && kill -0 $p0 2>/dev/null; do sleep 0.05; done; kill -9 $p1; wait $p0; "
      "echo rank0-exit=$?; cat rank0.log");
  EXPECT_CONTAINS(result.output, "rank0-exit=1");
  EXPECT_CONTAINS(result.output, "rank 0 of 2:");
  EXPECT_CONTAINS(result.output, "failed");
  EXPECT_CONTAINS(result.output, "rank 1: epoch");  // where rank 1 was last seen
  EXPECT_CONTAINS(result.output, "--resume");
  const auto done_before = metrics_of(run).size();
  EXPECT_GE(done_before, 1u);
  EXPECT_LT(done_before, 400u);

  auto resumed = run_command(cli() + " train --resume " + run.string() +
                             " --set train.epochs=" + std::to_string(done_before + 2));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_CONTAINS(resumed.output, "resuming");
  EXPECT_EQ(metrics_of(run).size(), done_before + 2);
}

// torchrun --max_restarts: after a rank is killed torchrun restarts every rank, and the
// restarted ranks (TORCHELASTIC_RESTART_COUNT=1) continue from the checkpoint by themselves.
TEST_F(DistributedTest, ATorchrunRestartResumesFromTheCheckpoint) {
  const fs::path run = dir() / "restarted";
  auto result = run_command(
      "exec 2>&1; " + torchrun("--max_restarts 1") + cli() + " train --config " + recipe() +
      " --out " + run.string() + " --set train.epochs=150 > " + (dir() / "restarted.log").string() +
      " 2>&1 & tr=$!; " + "while [ ! -f " + (run / "checkpoint" / "state.json").string() +
      " ] && kill -0 $tr 2>/dev/null; do sleep 0.05; done; kill -9 $(pgrep -P $tr | tail -1); "
      "wait $tr; echo torchrun-exit=$?; cat " +
      (dir() / "restarted.log").string());
  EXPECT_CONTAINS(result.output, "torchrun-exit=0");
  EXPECT_CONTAINS(result.output, "restart 1: resuming from the run's checkpoint");
  EXPECT_CONTAINS(result.output, "trained 150 epochs");
  const auto records = metrics_of(run);
  ASSERT_EQ(records.size(), 150u);
  for (size_t e = 0; e < records.size(); ++e) EXPECT_EQ(records[e]["epoch"], e + 1);
}

TEST_F(DistributedTest, RanksWithDifferentRecipesAreRefused) {
  const fs::path run = dir() / "differ";
  const std::string env =
      "WORLD_SIZE=2 LOCAL_WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port ";
  const std::string train = cli() + " train --config " + recipe() + " --out " + run.string();
  auto result = run_command(
      "exec 2>&1; port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); "
      "s.bind((\"127.0.0.1\", 0)); "
      "print(s.getsockname()[1])'); " +
      env + "RANK=1 LOCAL_RANK=1 " + train + " --set optim.lr=0.5 > /dev/null 2>&1 & " + env +
      "RANK=0 LOCAL_RANK=0 " + train + "; echo exit=$?; wait");
  EXPECT_CONTAINS(result.output, "rank 1 has a different configuration, data and model");
  EXPECT_CONTAINS(result.output, "exit=1");
  EXPECT_FALSE(fs::exists(run / "metrics.jsonl"));
}
