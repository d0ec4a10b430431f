#include <fmt/format.h>
#include <torch/torch.h>

#include <chrono>

#include "finch/bench/bench.h"
#include "finch/core/error.h"
#include "finch/train/distributed.h"

namespace finch::bench {

nlohmann::json bench_allreduce(const AllReduceBenchOptions& options) {
  const train::DistEnv env = train::DistEnv::from_environment();
  if (!env.distributed())
    throw Error(
        "finch bench allreduce measures the ranks of a job: start it with torchrun "
        "--nproc_per_node N -r 2 -t 2 --no_python finch bench allreduce");
  auto group = train::ProcessGroup::connect(env, std::chrono::seconds(options.timeout_s));
  const double world = group->size();
  nlohmann::json rows = nlohmann::json::array();
  for (int64_t bytes = 4 << 10; bytes <= (options.max_mb << 20); bytes *= 4) {
    torch::Tensor t = torch::ones({bytes / 4}, torch::kFloat);
    std::vector<torch::Tensor> one{t};
    group->all_reduce_sum(one, "warm-up");
    std::vector<double> ms;
    for (int64_t r = 0; r < options.repeats; ++r) {
      group->barrier("lining up the ranks");
      const auto start = std::chrono::steady_clock::now();
      group->all_reduce_sum(one, "the timed all-reduce");
      ms.push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
              .count());
    }
    const double median = percentile(ms, 50);
    const double algbw = bytes / (median / 1e3) / 1e9;
    rows.push_back({{"bytes", bytes},
                    {"median_ms", median},
                    {"p90_ms", percentile(ms, 90)},
                    {"algbw_gb_per_s", algbw},
                    {"busbw_gb_per_s", algbw * 2 * (world - 1) / world}});
  }
  if (env.rank != 0) return nullptr;
  return {{"world_size", group->size()},
          {"master_addr", env.master_addr},
          {"rows", rows},
          {"load_avg_1min", load_average_1min()}};
}

}  // namespace finch::bench
