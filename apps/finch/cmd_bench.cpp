// `finch bench infer|data`: throughput, latency percentiles, peak RSS and GFLOP/s of the
// inference path (library: finch/bench/bench.h).
#include <fmt/format.h>

#include <iostream>
#include <memory>

#include "commands.h"
#include "finch/bench/bench.h"

namespace finch::cli {

namespace {

void print_infer(const nlohmann::json& r, bool json) {
  if (json) {
    std::cout << r.dump() << "\n";
    return;
  }
  std::cout << fmt::format(
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
  auto infer_json = std::make_shared<bool>(false);
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
  cmd->add_flag("--json", *infer_json, "One JSON object instead of text");
  cmd->callback([infer, infer_json] { print_infer(bench::bench_infer(*infer), *infer_json); });

  auto data = std::make_shared<bench::DataBenchOptions>();
  auto data_json = std::make_shared<bool>(false);
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
  dcmd->add_flag("--json", *data_json, "One JSON object instead of text");
  dcmd->callback([data, data_json] {
    nlohmann::json r = bench::bench_data(*data);
    if (*data_json) {
      std::cout << r.dump() << "\n";
    } else {
      std::cout << fmt::format(
          "{} size {} workers {} batch {}: {:.1f} img/s, peak RSS {:.0f} MiB, load {:.2f}\n",
          data->root, data->size, data->workers, data->batch, r["img_per_s"].get<double>(),
          r["peak_rss_mib"].get<double>(), r["load_avg_1min"].get<double>());
    }
  });
}

}  // namespace finch::cli
