// `finch bench infer|data|train`: throughput, latency percentiles, peak RSS and GFLOP/s of
// finch's real inference, data and training paths (library: finch/bench/bench.h).
#include <fmt/format.h>

#include <functional>
#include <iostream>
#include <memory>

#include "commands.h"
#include "finch/bench/bench.h"
#include "finch/core/config.h"
#include "finch/eval/precision.h"

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
    if (r.is_null()) return;  // a rank other than 0 of a distributed measurement
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
  add_count_option(*cmd, "--batch", infer->batch, "Images per forward", 1, 65536);
  add_count_option(*cmd, "--size", infer->size, "Input side in pixels", 8, 8192);
  add_count_option(*cmd, "--threads", infer->threads, "Intra-op threads (0: LibTorch's default)", 0,
                   1024);
  cmd->add_option("--dtype", infer->dtype,
                  "fp32, bf16 or int8 (int8: ResNets, scales calibrated on the timed batch)")
      ->check(CLI::IsMember({"fp32", "bf16", "int8"}))
      ->capture_default_str();
  add_count_option(*cmd, "--iters", infer->iters, "Timed forwards", 1, 1000000);
  add_count_option(*cmd, "--warmup", infer->warmup, "Untimed forwards first", 0, 1000000);
  cmd->add_flag("!--no-optimize", infer->optimize,
                "Run the plain eager model (no BatchNorm folding) for comparison");
  cmd->add_flag("!--no-channels-last", infer->channels_last, "Keep NCHW activations");
  cmd->add_flag("!--no-onednn", infer->onednn_layout,
                "Keep dense weights (no oneDNN prepacking; channels-last instead)");
  add_output(
      cmd, [infer] { return bench::bench_infer(*infer); }, infer_text);

  auto peak = std::make_shared<bench::PeakBenchOptions>();
  auto* pcmd = bench->add_subcommand(
      "peak",
      "The CPU's peak GFLOP/s (multiply-add loop, fp32 and bf16) and LibTorch's GEMM, "
      "for a roofline");
  add_count_option(*pcmd, "--threads", peak->threads, "Threads (0: the CPUs available)", 0, 1024);
  add_count_option(*pcmd, "--gemm-size", peak->gemm_size, "n of the n x n x n GEMM", 64, 16384);
  add_output(
      pcmd, [peak] { return bench::bench_peak(*peak); },
      [](const nlohmann::json& r) {
        auto g = [&](const char* key) {
          return r[key].is_null() ? std::string("-") : fmt::format("{:.1f}", r[key].get<double>());
        };
        return fmt::format(
            "{}, {} threads, {}{}: multiply-add loop fp32 {} GFLOP/s, bf16 {} GFLOP/s; GEMM "
            "{}^3 fp32 {} GFLOP/s, bf16 {} GFLOP/s; load {:.2f}\n",
            r["cpu"].get<std::string>(), r["threads"].get<int>(), r["isa"].get<std::string>(),
            r["bf16_isa"].get<std::string>().empty() ? "" : ", " + r["bf16_isa"].get<std::string>(),
            g("fma_gflops_fp32"), g("fma_gflops_bf16"), r["gemm_size"].get<int64_t>(),
            g("gemm_gflops_fp32"), g("gemm_gflops_bf16"), r["load_avg_1min"].get<double>());
      });

  auto data = std::make_shared<bench::DataBenchOptions>();
  auto* dcmd = bench->add_subcommand(
      "data", "Loader img/s: decode + random_resized_crop + hflip + normalize + batch");
  dcmd->add_option("--dataset", data->dataset, "Dataset format")->capture_default_str();
  dcmd->add_option("--root", data->root, "Dataset root")->required();
  dcmd->add_option("--split", data->split, "Split")->capture_default_str();
  add_count_option(*dcmd, "--size", data->size, "random_resized_crop output side", 8, 8192);
  add_count_option(*dcmd, "--workers", data->workers, "Loader threads", 1, 256);
  add_count_option(*dcmd, "--batch", data->batch, "Images per batch", 1, 65536);
  add_count_option(*dcmd, "--batches", data->batches, "Timed batches", 1, 1000000);
  add_count_option(*dcmd, "--warmup", data->warmup, "Untimed batches first", 0, 1000000);
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
      "agree",
      "Top-1 agreement of a bf16 or int8 inference copy with fp32 on a real eval set (int8: "
      "calibrated first on shuffled images of --calibration-split)");
  acmd->add_option("--model", agree->model, "finch model file (or a backbone name: random weights)")
      ->required();
  acmd->add_option("--dataset", agree->dataset, "Dataset format")->capture_default_str();
  acmd->add_option("--root", agree->root, "Dataset root")->required();
  acmd->add_option("--split", agree->split, "Split")->capture_default_str();
  acmd->add_option("--dtype", agree->dtype, "Compared with fp32: bf16 or int8")
      ->check(CLI::IsMember({"bf16", "int8"}))
      ->capture_default_str();
  acmd->add_option("--calibration-split", agree->calibration_split,
                   "int8: split whose images set the activation ranges (never the test split)")
      ->capture_default_str();
  add_count_option(*acmd, "--calibration-images", agree->calibration_images,
                   "int8: calibration images", 1, int64_t{1} << 30);
  add_count_option(*acmd, "--batch", agree->batch, "Images per forward", 1, 65536);
  add_count_option(*acmd, "--limit", agree->limit, "First N images only (0: all)", 0,
                   int64_t{1} << 40);
  add_count_option(*acmd, "--threads", agree->threads, "Intra-op threads", 0, 1024);
  acmd->add_flag("--record", agree->record,
                 "Store the result in the model file: what `--dtype auto` decides from "
                 "(use a validation split, not the test split)");
  add_output(
      acmd, [agree] { return bench::bench_agreement(*agree); },
      [agree](const nlohmann::json& r) {
        const std::string d = agree->dtype;
        return fmt::format(
                   "{} images: top-1 agreement {} vs fp32 {:.4f}; top-1 fp32 {:.4f}, {} {:.4f}; "
                   "max |prob "
                   "diff| {:.2e}; fp32 {:.1f} img/s, {} {:.1f} img/s{}\n",
                   r["images"].get<int64_t>(), d, r["agreement"].get<double>(),
                   r["top1_fp32"].get<double>(), d, r["top1_" + d].get<double>(),
                   r["max_abs_prob_diff"].get<double>(), r["img_per_s_fp32"].get<double>(), d,
                   r["img_per_s_" + d].get<double>(),
                   r["agreement"].get<double>() >=
                           (d == "int8" ? eval::kInt8MinAgreement : eval::kBf16MinAgreement)
                       ? ""
                       : (d == "int8" ? " (below the 99% needed to record it)"
                                      : " (below the 99.5% needed to use it)")) +
               (r["recorded"].get<bool>() ? "recorded in " + agree->model + "\n" : "");
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
  add_count_option(*tcmd, "--steps", train->options.steps, "Timed optimizer steps", 1, 1000000);
  add_count_option(*tcmd, "--warmup", train->options.warmup, "Untimed steps first (>= 1)", 1,
                   1000000);
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

  auto search = std::make_shared<bench::SearchBenchOptions>();
  auto* scmd = bench->add_subcommand(
      "search",
      "Gallery search latency (exact and FAISS hnsw / ivf) and FAISS recall@k on "
      "synthetic clustered embeddings");
  add_count_option(*scmd, "--items", search->items, "Gallery items", 1, int64_t{1} << 32);
  add_count_option(*scmd, "--dim", search->dim, "Embedding size", 1, 65536);
  add_count_option(*scmd, "--queries", search->queries, "Queries per batch", 1, 1 << 20);
  add_count_option(*scmd, "--k", search->k, "Neighbours per query", 1, 100000);
  add_count_option(*scmd, "--rounds", search->rounds, "Timed searches (median)", 1, 100000);
  scmd->add_option("--index", search->index, "exact | hnsw | ivf")
      ->check(CLI::IsMember({"exact", "hnsw", "ivf"}))
      ->capture_default_str();
  add_count_option(*scmd, "--nprobe", search->nprobe, "IVF cells scanned per query", 1, 1 << 20);
  add_count_option(*scmd, "--threads", search->threads, "Compute threads (0: LibTorch's default)",
                   0, 1024);
  add_output(
      scmd, [search] { return bench::bench_search(*search); },
      [](const nlohmann::json& r) {
        std::string line = fmt::format(
            "{} items x {}-d ({:.0f} MiB), {} queries, k {}: exact {:.1f} ms per batch "
            "({:.2f} ms per query)",
            r["items"].get<int64_t>(), r["dim"].get<int64_t>(), r["gallery_mib"].get<double>(),
            r["queries"].get<int64_t>(), r["k"].get<int64_t>(),
            r["exact_ms_per_batch"].get<double>(), r["exact_ms_per_query"].get<double>());
        if (r.contains("ann_ms_per_batch"))
          line += fmt::format("; {} built in {:.1f} s, {:.1f} ms per batch, recall@{} {:.4f}",
                              r["index_description"].get<std::string>(),
                              r["index_build_s"].get<double>(), r["ann_ms_per_batch"].get<double>(),
                              r["k"].get<int64_t>(), r["recall_at_k_vs_exact"].get<double>());
        return line + fmt::format(", peak RSS {:.0f} MiB, load {:.2f}\n",
                                  r["peak_rss_mib"].get<double>(),
                                  r["load_avg_1min"].get<double>());
      });

  auto allreduce = std::make_shared<bench::AllReduceBenchOptions>();
  auto* rcmd = bench->add_subcommand(
      "allreduce", "Under torchrun: time of one gradient all-reduce vs message size (c10d Gloo)");
  add_count_option(*rcmd, "--max-mb", allreduce->max_mb, "Largest message in MB", 1, 4096);
  add_count_option(*rcmd, "--repeats", allreduce->repeats, "Timed all-reduces per size", 1, 100000);
  add_output(
      rcmd, [allreduce] { return bench::bench_allreduce(*allreduce); },
      [](const nlohmann::json& r) {
        std::string text =
            fmt::format("all-reduce over {} ranks (load {:.2f}):\n", r["world_size"].get<int>(),
                        r["load_avg_1min"].get<double>());
        for (const auto& row : r["rows"])
          text +=
              fmt::format("  {:>10} bytes  {:9.3f} ms  algbw {:6.2f} GB/s  busbw {:6.2f} GB/s\n",
                          row["bytes"].get<int64_t>(), row["median_ms"].get<double>(),
                          row["algbw_gb_per_s"].get<double>(), row["busbw_gb_per_s"].get<double>());
        return text;
      });
}

}  // namespace finch::cli
