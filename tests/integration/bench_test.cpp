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

TEST(BenchCli, BadModelNameFails) {
  auto r = ft::run_command(ft::cli_path().string() + " bench infer --model no_such_net --iters 1");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("no_such_net"), std::string::npos) << r.output;
}
