// `finch bench infer|data|train`: throughput, latency percentiles, peak RSS and GFLOP/s of
// finch's real inference, data and training paths (library: finch/bench/bench.h).
#include <fmt/format.h>

#include <functional>
#include <iostream>
#include <memory>

#include "commands.h"
#include "finch/bench/bench.h"
#include "finch/core/config.h"

namespace finch::cli {

namespace {

// Every bench subcommand runs a measurement and prints its JSON object (--json) or one line
// of text made from it.
void add_output(CLI::App* cmd, std::function<nlohmann::json()> measure,
                std::function<std::string(const nlohmann::json&)> text) {
  auto json = std::make_shared<bool>(false);
  cmd->add_flag("--json", *json, "One JSON object instead of text");
  cmd->callback([json, measure, text] {
    const nlohmann::json r = measure();
    std::cout << (*json ? r.dump() + "\n" : text(r));
  });
}

std::string infer_text(const nlohmann::json& r) {
  return fmt::format(
      "{} batch {} size {} {} threads {}{}: {:.2f} img/s, latency per batch p50 {:.1f} ms p90 "
      "{:.1f} ms p99 {:.1f} ms, {:.2f} GMAC/img, {:.1f} GFLOP/s, peak RSS {:.0f} MiB, load "
      "{:.2f}\n",
      r["model"].get<std::string>(), r["batch"].get<int64_t>(), r["size"].get<int64_t>(),
      r["dtype"].get<std::string>(), r["threads"].get<int64_t>(),
      r["optimized"].get<bool>() ? "" : " (plain eager)", r["img_per_s"].get<double>(),
      r["latency_ms"]["p50"].get<double>(), r["latency_ms"]["p90"].get<double>(),
      r["latency_ms"]["p99"].get<double>(), r["gmacs_per_image"].get<double>(),
      r["gflop_per_s"].get<double>(), r["peak_rss_mib"].get<double>(),
      r["load_avg_1min"].get<double>());
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto* bench = app.add_subcommand("bench", "Measure throughput, latency and memory");
  bench->require_subcommand(1);

  auto infer = std::make_shared<bench::InferBenchOptions>();
  auto* cmd = bench->add_subcommand(
      "infer", "Inference img/s, latency p50/p90/p99, peak RSS, GFLOP/s on random images");
  cmd->add_option("--model", infer->model,
                  "Registered backbone name (random weights, linear head, 1000 classes) or a "
                  "finch model file")
      ->capture_default_str();
  cmd->add_option("--batch", infer->batch, "Images per forward")->capture_default_str();
  cmd->add_option("--size", infer->size, "Input side in pixels")->capture_default_str();
  cmd->add_option("--threads", infer->threads, "Intra-op threads (0: LibTorch's default)")
      ->capture_default_str();
  cmd->add_option("--dtype", infer->dtype, "fp32 or bf16")
      ->check(CLI::IsMember({"fp32", "bf16"}))
      ->capture_default_str();
  cmd->add_option("--iters", infer->iters, "Timed forwards")->capture_default_str();
  cmd->add_option("--warmup", infer->warmup, "Untimed forwards first")->capture_default_str();
  cmd->add_flag("!--no-optimize", infer->optimize,
                "Run the plain eager model (no BatchNorm folding) for comparison");
  cmd->add_flag("!--no-channels-last", infer->channels_last, "Keep NCHW activations");
  cmd->add_flag("!--no-onednn", infer->onednn_layout,
                "Keep dense weights (no oneDNN prepacking; channels-last instead)");
  add_output(
      cmd, [infer] { return bench::bench_infer(*infer); }, infer_text);

  auto data = std::make_shared<bench::DataBenchOptions>();
  auto* dcmd = bench->add_subcommand(
      "data", "Loader img/s: decode + random_resized_crop + hflip + normalize + batch");
  dcmd->add_option("--dataset", data->dataset, "Dataset format")->capture_default_str();
  dcmd->add_option("--root", data->root, "Dataset root")->required();
  dcmd->add_option("--split", data->split, "Split")->capture_default_str();
  dcmd->add_option("--size", data->size, "random_resized_crop output side")->capture_default_str();
  dcmd->add_option("--workers", data->workers, "Loader threads")->capture_default_str();
  dcmd->add_option("--batch", data->batch, "Images per batch")->capture_default_str();
  dcmd->add_option("--batches", data->batches, "Timed batches")->capture_default_str();
  dcmd->add_option("--warmup", data->warmup, "Untimed batches first")->capture_default_str();
  add_output(
      dcmd, [data] { return bench::bench_data(*data); },
      [data](const nlohmann::json& r) {
        return fmt::format(
            "{} size {} workers {} batch {}: {:.1f} img/s, peak RSS {:.0f} MiB, load "
            "{:.2f}\n",
            data->root, data->size, data->workers, data->batch, r["img_per_s"].get<double>(),
            r["peak_rss_mib"].get<double>(), r["load_avg_1min"].get<double>());
      });

  auto agree = std::make_shared<bench::AgreementOptions>();
  auto* acmd = bench->add_subcommand(
      "agree", "Top-1 agreement of a bf16 inference copy with fp32 on a real eval set");
  acmd->add_option("--model", agree->model, "finch model file (or a backbone name: random weights)")
      ->required();
  acmd->add_option("--dataset", agree->dataset, "Dataset format")->capture_default_str();
  acmd->add_option("--root", agree->root, "Dataset root")->required();
  acmd->add_option("--split", agree->split, "Split")->capture_default_str();
  acmd->add_option("--dtype", agree->dtype, "Compared with fp32")
      ->check(CLI::IsMember({"bf16"}))
      ->capture_default_str();
  acmd->add_option("--batch", agree->batch, "Images per forward")->capture_default_str();
  acmd->add_option("--limit", agree->limit, "First N images only (0: all)")->capture_default_str();
  acmd->add_option("--threads", agree->threads, "Intra-op threads")->capture_default_str();
  add_output(
      acmd, [agree] { return bench::bench_agreement(*agree); },
      [agree](const nlohmann::json& r) {
        const std::string d = agree->dtype;
        return fmt::format(
            "{} images: top-1 agreement {} vs fp32 {:.4f}; top-1 fp32 {:.4f}, {} {:.4f}; max |prob "
            "diff| {:.2e}; fp32 {:.1f} img/s, {} {:.1f} img/s{}\n",
            r["images"].get<int64_t>(), d, r["agreement"].get<double>(),
            r["top1_fp32"].get<double>(), d, r["top1_" + d].get<double>(),
            r["max_abs_prob_diff"].get<double>(), r["img_per_s_fp32"].get<double>(), d,
            r["img_per_s_" + d].get<double>(),
            r["agreement"].get<double>() >= 0.995 ? "" : " (below the 99.5% needed to use it)");
      });

  struct TrainArgs {
    std::string config_file;
    std::vector<std::string> overrides;
    bench::TrainBenchOptions options;
  };
  auto train = std::make_shared<TrainArgs>();
  auto* tcmd = bench->add_subcommand(
      "train", "Training img/s and step time of the real trainer on a recipe (no validation)");
  tcmd->add_option("--config,-c", train->config_file, "YAML recipe")
      ->required()
      ->check(CLI::ExistingFile);
  tcmd->add_option("--set", train->overrides, "Override a config key (repeatable)")
      ->allow_extra_args(false);
  tcmd->add_option("--steps", train->options.steps, "Timed optimizer steps")->capture_default_str();
  tcmd->add_option("--warmup", train->options.warmup, "Untimed steps first (>= 1)")
      ->capture_default_str();
  add_output(
      tcmd,
      [train] {
        return bench::bench_train(Config::load(train->config_file, train->overrides),
                                  train->options);
      },
      [](const nlohmann::json& r) {
        return fmt::format(
            "{} + {} batch {} threads {} workers {}: {:.2f} img/s, step p50 {:.0f} ms p90 {:.0f} "
            "ms "
            "p99 {:.0f} ms, peak RSS {:.0f} MiB, load {:.2f}\n",
            r["backbone"].get<std::string>(), r["head"].get<std::string>(),
            r["batch"].get<int64_t>(), r["threads"].get<int>(), r["workers"].get<int>(),
            r["img_per_s"].get<double>(), r["step_ms"]["p50"].get<double>(),
            r["step_ms"]["p90"].get<double>(), r["step_ms"]["p99"].get<double>(),
            r["peak_rss_mib"].get<double>(), r["load_avg_1min"].get<double>());
      });
}

}  // namespace finch::cli
