#pragma once
// `finch bench`: throughput, latency percentiles, peak memory and arithmetic rate of finch's
// real code paths (inference copy, data loader, trainer). Warm-up iterations are excluded.
// Timing lives here and in bench/, never in tests.
#include <torch/types.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "finch/models/model.h"

namespace finch::bench {

/// Peak resident set size of this process in MiB (VmHWM of /proc/self/status); 0 if unknown.
double peak_rss_mib();
/// 1-minute load average (/proc/loadavg); -1 if unknown. Benchmarks print it with every
/// result because the build machines are shared.
double load_average_1min();

/// Multiply-adds of every convolution and linear layer that one forward of `model` on
/// `images` runs, counted from the shapes the ops actually see (a traced forward through
/// LibTorch's RecordFunction callbacks on aten::convolution, addmm, mm and bmm). Divided by
/// the batch size: per image.
double count_macs_per_image(models::Classifier& model, const torch::Tensor& images);

/// p in [0, 100] of `values` (linear interpolation between closest ranks, like numpy).
double percentile(std::vector<double> values, double p);

struct InferBenchOptions {
  std::string model = "resnet50";  // registered backbone name, or a finch model file
  int64_t batch = 1;
  int64_t size = 224;
  int64_t threads = 2;
  int64_t iters = 20;
  int64_t warmup = 3;
  std::string dtype = "fp32";  // fp32 | bf16
  bool optimize = true;        // models::optimize_for_inference (BN folding, channels-last)
  bool channels_last = true;
};

/// Times `iters` forwards of a batch of random images after `warmup` ones. JSON: img_per_s,
/// latency_ms {p50, p90, p99} per batch, peak_rss_mib, gmacs_per_image, gflop_per_s (2 FLOPs
/// per multiply-add), and the settings.
nlohmann::json bench_infer(const InferBenchOptions& options);

struct DataBenchOptions {
  std::string dataset = "imagefolder";  // a registered format (--dataset)
  std::string root;
  std::string split = "train";
  int64_t size = 448;  // random_resized_crop output side
  int workers = 2;
  int64_t batch = 32;
  int64_t batches = 20;  // timed batches
  int64_t warmup = 2;    // untimed batches first
};

/// The training data path through the real Loader: decode + random_resized_crop(size) +
/// hflip + normalize + batch, shuffled. JSON: img_per_s, batches, peak_rss_mib, settings.
nlohmann::json bench_data(const DataBenchOptions& options);

}  // namespace finch::bench
