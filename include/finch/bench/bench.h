#pragma once
// `finch bench`: throughput, latency percentiles, peak memory and arithmetic rate of finch's
// real code paths (inference copy, data loader, trainer). Warm-up iterations are excluded.
// Timing lives here and in bench/, never in tests.
#include <torch/types.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "finch/core/config.h"
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
  bool onednn_layout = true;  // models::InferenceOptions::onednn_layout
};

/// Times `iters` forwards of a batch of random images after `warmup` ones. JSON: img_per_s,
/// latency_ms {p50, p90, p99} per batch, peak_rss_mib, gmacs_per_image, gflop_per_s (2 FLOPs
/// per multiply-add), and the settings.
nlohmann::json bench_infer(const InferBenchOptions& options);

struct PeakBenchOptions {
  int64_t threads = 0;  // 0: the CPUs this process may use
  int64_t gemm_size = 2048;
};

/// The machine's arithmetic peak, for a roofline: a register-blocked multiply-add loop
/// (12 independent accumulators per thread; AVX-512F, else AVX2 + FMA) in fp32, and
/// AVX512_BF16 dot products (vdpbf16ps) where the CPU has them; and what LibTorch's own GEMM
/// (n x n x n torch::mm, fp32 and bf16) reaches. JSON: cpu, isa, threads, fma_gflops_fp32,
/// fma_gflops_bf16 (null without native bf16), gemm_gflops_fp32, gemm_gflops_bf16.
nlohmann::json bench_peak(const PeakBenchOptions& options);

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

struct AgreementOptions {
  std::string
      model;  // a finch model file, or a backbone name (random weights, resize 256 + crop 224)
  std::string dataset = "idx";
  std::string root;
  std::string split = "test";
  std::string dtype = "bf16";  // the dtype compared with fp32: bf16 | int8
  /// int8: activation ranges come from this many shuffled images of calibration_split.
  std::string calibration_split = "train";
  int64_t calibration_images = 512;
  int64_t batch = 64;
  int64_t limit = 0;  // first N images only (0: all)
  int64_t threads = 2;
  bool record = false;  // store the result in the model file (what `--dtype auto` reads)
};

/// Runs the same model as an fp32 and as a `dtype` inference copy over a real eval set (the
/// model file's eval transforms) and compares them. JSON: images, agreement (share of
/// images with the same top-1 class), top1 of each dtype against the labels, max_abs_prob_diff
/// (softmax), img_per_s of each. Only an agreement >= 99.5% justifies offering bf16
/// (eval::kBf16MinAgreement); int8 is first calibrated on `calibration_images` shuffled images
/// of `calibration_split` and is recorded only at >= 99% (eval::kInt8MinAgreement). With
/// `record`, the result (int8: with its calibration) goes into the model file's dtype_checks.
nlohmann::json bench_agreement(const AgreementOptions& options);

struct TrainBenchOptions {
  int64_t steps = 20;  // timed optimizer steps
  int64_t warmup = 3;  // untimed steps first (oneDNN set-up, loader start)
};

/// The real trainer (`train::run_training`) on `config` for warmup + steps optimizer steps in
/// a temporary run folder: one epoch capped at that many steps, no validation. Every step is
/// timed from the end of the previous one, so data waiting counts. JSON: img_per_s over the
/// timed steps, step_ms {p50, p90, p99}, batch, peak_rss_mib, the model and settings.
nlohmann::json bench_train(Config config, const TrainBenchOptions& options);

struct SearchBenchOptions {
  int64_t items = 100000;  // gallery size
  int64_t dim = 2048;
  int64_t queries = 64;  // one query batch
  int64_t k = 10;
  int64_t rounds = 5;           // timed searches of the query batch (median reported)
  std::string index = "exact";  // exact | hnsw | ivf
  int64_t nprobe = 16;
  int64_t threads = 2;
};

/// Gallery search on synthetic embedding-like unit vectors (1000 clusters in a 32-d latent
/// space projected to `dim`): the time of one query batch (median of rounds) by exact search and,
/// for hnsw / ivf, the FAISS index's build time, its search time and recall@k against exact search;
/// the gallery's memory and the process's peak RSS.
nlohmann::json bench_search(const SearchBenchOptions& options);

struct AllReduceBenchOptions {
  int64_t max_mb = 64;   // sizes 4 KB, 16 KB, ... up to this many MB (x4 steps)
  int64_t repeats = 10;  // timed all-reduces per size (median reported)
  int64_t timeout_s = 120;
};
/// Run under torchrun (every rank): the time of one float32 sum all-reduce over the job's
/// ranks per message size, as the gradient reducer uses it. Rank 0's JSON has per size the
/// median ms, algorithmic bandwidth (bytes / time) and bus bandwidth (x 2 (W - 1) / W, the
/// bytes each rank's link carries in a ring, as nccl-tests define it); other ranks return null.
nlohmann::json bench_allreduce(const AllReduceBenchOptions& options);

}  // namespace finch::bench
