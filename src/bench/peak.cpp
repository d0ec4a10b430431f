// `finch bench peak`: the arithmetic peak of this machine (finch/bench/bench.h). The loops
// are compiled for their instruction set with target attributes and chosen at run time, so
// the binary stays portable.
#include <immintrin.h>
#include <torch/torch.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "finch/bench/bench.h"
#include "finch/core/error.h"
#include "finch/core/threads.h"
#include "finch/eval/precision.h"

namespace finch::bench {

namespace {

using Clock = std::chrono::steady_clock;

// 12 independent accumulators hide the FMA latency (4 cycles) on two FMA ports.
constexpr int kChains = 12;

// Lanes summed through memory (GCC 12's _mm512_reduce_add_ps warns inside its own header).
__attribute__((target("avx512f"))) float sum_lanes(__m512 v) {
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, v);
  float sum = 0;
  for (float x : lanes) sum += x;
  return sum;
}

__attribute__((target("avx512f"))) float fma_avx512(int64_t iters) {
  __m512 acc[kChains];
  for (int k = 0; k < kChains; ++k) acc[k] = _mm512_set1_ps(0.001f * k);
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (int64_t i = 0; i < iters; ++i)
    for (int k = 0; k < kChains; ++k) acc[k] = _mm512_fmadd_ps(acc[k], a, b);
  __m512 sum = acc[0];
  for (int k = 1; k < kChains; ++k) sum = _mm512_add_ps(sum, acc[k]);
  return sum_lanes(sum);
}

__attribute__((target("avx2,fma"))) float fma_avx2(int64_t iters) {
  __m256 acc[kChains];
  for (int k = 0; k < kChains; ++k) acc[k] = _mm256_set1_ps(0.001f * k);
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (int64_t i = 0; i < iters; ++i)
    for (int k = 0; k < kChains; ++k) acc[k] = _mm256_fmadd_ps(acc[k], a, b);
  alignas(32) float out[8];
  __m256 sum = acc[0];
  for (int k = 1; k < kChains; ++k) sum = _mm256_add_ps(sum, acc[k]);
  _mm256_store_ps(out, sum);
  return out[0] + out[7];
}

// vdpbf16ps: 32 bf16 products summed pairwise into 16 fp32 lanes, 64 FLOPs per instruction.
__attribute__((target("avx512f,avx512bf16"))) float dot_bf16(int64_t iters) {
  __m512 acc[kChains];
  for (int k = 0; k < kChains; ++k) acc[k] = _mm512_set1_ps(0.001f * k);
  const __m512bh a = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3f), _mm512_set1_ps(2e-3f));
  const __m512bh b = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3f), _mm512_set1_ps(1e-3f));
  for (int64_t i = 0; i < iters; ++i)
    for (int k = 0; k < kChains; ++k) acc[k] = _mm512_dpbf16_ps(acc[k], a, b);
  __m512 sum = acc[0];
  for (int k = 1; k < kChains; ++k) sum = _mm512_add_ps(sum, acc[k]);
  return sum_lanes(sum);
}

// Runs `kernel(iters)` on `threads` threads at once; FLOP/s from the wall time. Repeated
// `rounds` times, the best round counts (a peak, not a typical figure).
double loop_gflops(float (*kernel)(int64_t), int threads, double flops_per_iter) {
  const int64_t iters = 20'000'000;
  double best = 0;
  for (int round = 0; round < 3; ++round) {
    std::atomic<int> ready{0};
    std::atomic<bool> go{false};
    std::vector<float> sink(threads);
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&, t] {
        ready.fetch_add(1);
        while (!go.load()) {
        }
        sink[t] = kernel(iters);
      });
    while (ready.load() < threads) {
    }
    const auto start = Clock::now();
    go.store(true);
    for (auto& th : pool) th.join();
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    volatile float keep = sink[0];
    (void)keep;
    best = std::max(best, flops_per_iter * iters * threads / seconds / 1e9);
  }
  return best;
}

double gemm_gflops(torch::Dtype dtype, int64_t n) {
  torch::NoGradGuard no_grad;
  const auto a = torch::randn({n, n}).to(dtype), b = torch::randn({n, n}).to(dtype);
  auto c = torch::mm(a, b);  // warm-up: packing buffers, oneDNN primitives
  double best = 0;
  for (int round = 0; round < 5; ++round) {
    const auto start = Clock::now();
    c = torch::mm(a, b);
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    best = std::max(best, 2.0 * n * n * n / seconds / 1e9);
  }
  return best;
}

}  // namespace

nlohmann::json bench_peak(const PeakBenchOptions& options) {
  if (options.gemm_size < 64) throw Error("bench peak: --gemm-size must be >= 64");
  const int threads = choose_threads(static_cast<int>(options.threads));
  torch::set_num_threads(threads);
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f");
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const std::string bf16_isa = eval::cpu_bf16_isa();
  nlohmann::json out{{"cpu", eval::cpu_model_name()},
                     {"threads", threads},
                     {"gemm_size", options.gemm_size},
                     {"load_avg_1min", load_average_1min()}};
  if (avx512) {
    out["isa"] = "AVX-512F";
    out["fma_gflops_fp32"] = loop_gflops(fma_avx512, threads, kChains * 16 * 2);
  } else if (avx2) {
    out["isa"] = "AVX2+FMA";
    out["fma_gflops_fp32"] = loop_gflops(fma_avx2, threads, kChains * 8 * 2);
  } else {
    out["isa"] = "none (no AVX2)";
    out["fma_gflops_fp32"] = nullptr;
  }
  out["bf16_isa"] = bf16_isa;
  out["fma_gflops_bf16"] = nullptr;
  if (avx512 && !bf16_isa.empty())
    out["fma_gflops_bf16"] = loop_gflops(dot_bf16, threads, kChains * 32 * 2);
  out["gemm_gflops_fp32"] = gemm_gflops(torch::kFloat32, options.gemm_size);
  out["gemm_gflops_bf16"] = gemm_gflops(torch::kBFloat16, options.gemm_size);
  return out;
}

}  // namespace finch::bench
