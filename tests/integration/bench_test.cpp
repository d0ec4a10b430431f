// `finch bench` smoke tests: the JSON has the fields the benchmark scripts read. Nothing is
// timed here (values are only checked to be present and positive).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "test_support.h"

namespace ft = finch::test;

namespace {

nlohmann::json last_json_line(const std::string& output) {
  const auto end = output.find_last_not_of('\n');
  const auto begin = output.rfind('\n', end);
  return nlohmann::json::parse(output.substr(begin == std::string::npos ? 0 : begin + 1));
}

}  // namespace

TEST(BenchCli, InferJson) {
  auto r = ft::run_command(ft::cli_path().string() +
                           " bench infer --model resnet20 --batch 2 --size 32 --threads 1 "
                           "--iters 2 --warmup 1 --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto j = last_json_line(r.output);
  EXPECT_GT(j["img_per_s"].get<double>(), 0);
  EXPECT_GT(j["latency_ms"]["p50"].get<double>(), 0);
  EXPECT_GE(j["latency_ms"]["p99"].get<double>(), j["latency_ms"]["p50"].get<double>());
  // By hand (see the models test): 40,812,544 conv MACs + a 64 x 1000 fc.
  EXPECT_NEAR(j["gmacs_per_image"].get<double>(), 40876544e-9, 1e-12);
  EXPECT_GT(j["gflop_per_s"].get<double>(), 0);
  EXPECT_GT(j["peak_rss_mib"].get<double>(), 0);
  EXPECT_EQ(j["batch"].get<int64_t>(), 2);
}

TEST(BenchCli, DataJson) {
  ft::TempDir dir;
  ft::make_pattern_imagefolder(dir.path(), 2, 4, 40);
  auto r = ft::run_command(ft::cli_path().string() + " bench data --root " + dir.path().string() +
                           " --size 24 --workers 2 --batch 4 --batches 3 --warmup 1 --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto j = last_json_line(r.output);
  EXPECT_GT(j["img_per_s"].get<double>(), 0);
  EXPECT_EQ(j["batches"].get<int64_t>(), 3);
  EXPECT_GT(j["peak_rss_mib"].get<double>(), 0);
}

// The roofline's denominator: every ISA the CPU reports gets its figure, and one the CPU
// lacks is null rather than a made-up number.
TEST(BenchCli, PeakJson) {
  auto r =
      ft::run_command(ft::cli_path().string() + " bench peak --threads 1 --gemm-size 64 --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto j = last_json_line(r.output);
  EXPECT_EQ(j["threads"].get<int>(), 1);
  EXPECT_GT(j["gemm_gflops_fp32"].get<double>(), 0);
  EXPECT_GT(j["gemm_gflops_bf16"].get<double>(), 0);
  if (j["isa"] != "none (no AVX2)") EXPECT_GT(j["fma_gflops_fp32"].get<double>(), 0);
  EXPECT_EQ(j["fma_gflops_bf16"].is_null(), j["bf16_isa"].get<std::string>().empty());
  EXPECT_NE(ft::run_command(ft::cli_path().string() + " bench peak --gemm-size 8").exit_code, 0);
}

TEST(BenchCli, BadModelNameFails) {
  auto r = ft::run_command(ft::cli_path().string() + " bench infer --model no_such_net --iters 1");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("no_such_net"), std::string::npos) << r.output;
}

namespace {

// A tiny recipe over a generated folder: 24 training images, batch 4 -> 6 steps per epoch.
void write_tiny_train_recipe(const std::filesystem::path& dir) {
  ft::make_pattern_imagefolder(dir / "data" / "train", 2, 12, 16, 1);
  ft::write_text(dir / "recipe.yaml",
                 "threads: 1\n"
                 "data: {format: imagefolder, root: " +
                     (dir / "data").string() +
                     ", workers: 1, train_transforms: [{type: hflip}],"
                     " eval_transforms: []}\n"
                     "model: {backbone: resnet20, width: 8, input_size: 16}\n"
                     "train: {batch_size: 4, drop_last: true}\n");
}

}  // namespace

TEST(BenchCli, TrainJsonTimesOnlyTheStepsAfterWarmup) {
  ft::TempDir dir;
  write_tiny_train_recipe(dir.path());
  auto r = ft::run_command(ft::cli_path().string() + " bench train --config " +
                           (dir.path() / "recipe.yaml").string() + " --steps 3 --warmup 2 --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto j = last_json_line(r.output);
  EXPECT_EQ(j["steps"].get<int64_t>(), 3);
  EXPECT_EQ(j["batch"].get<int64_t>(), 4);
  EXPECT_EQ(j["backbone"].get<std::string>(), "resnet20");
  EXPECT_GT(j["img_per_s"].get<double>(), 0);
  EXPECT_GE(j["step_ms"]["p99"].get<double>(), j["step_ms"]["p50"].get<double>());
  EXPECT_GT(j["peak_rss_mib"].get<double>(), 0);
  // The temporary run folder is gone.
  EXPECT_EQ(r.output.find("finch-bench-train"), std::string::npos) << r.output;
}

TEST(BenchCli, TrainNeedsEnoughStepsInOneEpoch) {
  ft::TempDir dir;
  write_tiny_train_recipe(dir.path());
  auto r = ft::run_command(ft::cli_path().string() + " bench train --config " +
                           (dir.path() / "recipe.yaml").string() + " --steps 10 --warmup 1");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("only 6 steps"), std::string::npos) << r.output;
  auto zero = ft::run_command(ft::cli_path().string() + " bench train --config " +
                              (dir.path() / "recipe.yaml").string() + " --warmup 0");
  EXPECT_NE(zero.exit_code, 0);
  // Range-checked when the command line is parsed.
  EXPECT_NE(zero.output.find("--warmup: Value 0 not in range 1"), std::string::npos) << zero.output;
}

TEST(BenchCli, AgreeComparesBf16WithFp32OnEveryImage) {
  ft::TempDir dir;
  ft::make_pattern_imagefolder(dir.path(), 2, 5, 32, 3);  // writes the train split
  auto r = ft::run_command(ft::cli_path().string() + " bench agree --model resnet20 --dataset " +
                           "imagefolder --root " + dir.path().string() +
                           " --split train --batch 4 --threads 1 --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto j = last_json_line(r.output);
  EXPECT_EQ(j["images"].get<int64_t>(), 10);
  const double agreement = j["agreement"].get<double>();
  EXPECT_GE(agreement, 0.0);
  EXPECT_LE(agreement, 1.0);
  // bf16 rounds: the probabilities differ, but not wildly.
  EXPECT_GT(j["max_abs_prob_diff"].get<double>(), 0.0);
  EXPECT_LT(j["max_abs_prob_diff"].get<double>(), 0.5);
  EXPECT_GT(j["img_per_s_bf16"].get<double>(), 0.0);
}

// `--dtype auto` end to end: `finch train` records the bf16 check in best.safetensors where
// the CPU has native bf16 (and only there), `finch bench agree --record` records one in any
// model file, and predict runs in what the record and the CPU decide, saying so.
TEST(DtypeAuto, TrainRecordsTheCheckAndPredictFollowsIt) {
  ft::TempDir dir;
  ft::make_pattern_imagefolder(dir / "data", 2, 8, 32, 5);
  ft::write_text(dir / "recipe.yaml",
                 "data: {format: imagefolder, root: " + (dir / "data").string() +
                     ", val_fraction: 0.25}\n"
                     "model: {backbone: resnet20, width: 16}\n"
                     "train: {epochs: 1, batch_size: 4, progress: none}\n");
  const std::string cli = ft::cli_path().string();
  auto trained = ft::run_command(cli + " train --config " + (dir / "recipe.yaml").string() +
                                 " --out " + (dir / "run").string() + " 2>&1");
  ASSERT_EQ(trained.exit_code, 0) << trained.output;
  const std::string model = (dir / "run" / "best.safetensors").string();
  // Whether this CPU has native bf16, as finch reads it.
  const bool native =
      ft::run_command("grep -qwE 'avx512_bf16|amx_bf16' /proc/cpuinfo").exit_code == 0;
  EXPECT_EQ(trained.output.find("bf16 check on 4 validation images") != std::string::npos, native)
      << trained.output;

  auto recorded = ft::run_command(cli + " bench agree --model " + model +
                                  " --dataset imagefolder --root " + (dir / "data").string() +
                                  " --split train --batch 4 --threads 1 --record --json");
  ASSERT_EQ(recorded.exit_code, 0) << recorded.output;
  const auto j = last_json_line(recorded.output);
  EXPECT_EQ(j["images"], 16);
  EXPECT_EQ(j["recorded"], true);

  // stderr only (run_command appends 2>&1 to the group).
  // The notice is for people: text mode (--json consumers read "dtype" from eval's JSON).
  auto predicted = ft::run_command("{ " + cli + " predict --model " + model + " " +
                                   (dir / "data").string() + " >/dev/null; }");
  ASSERT_EQ(predicted.exit_code, 0) << predicted.output;
  const bool bf16 = native && j["agreement"].get<double>() >= 0.995;
  EXPECT_EQ(predicted.output.find("running in bf16 (--dtype auto: ") != std::string::npos, bf16)
      << predicted.output;
  auto forced = ft::run_command("{ " + cli + " predict --dtype fp32 --model " + model + " " +
                                (dir / "data").string() + " >/dev/null; }");
  ASSERT_EQ(forced.exit_code, 0);
  EXPECT_EQ(forced.output.find("running in bf16"), std::string::npos);
  auto evaluated =
      ft::run_command(cli + " eval --json --model " + model + " --dataset imagefolder --root " +
                      (dir / "data").string() + " --split train 2>/dev/null");
  ASSERT_EQ(evaluated.exit_code, 0) << evaluated.output;
  EXPECT_EQ(last_json_line(evaluated.output)["dtype"], bf16 ? "bf16" : "fp32");
}
