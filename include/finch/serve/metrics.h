#pragma once
// Prometheus text-format metrics of `finch serve` (exposition format 0.0.4, written by hand:
// counters, gauges and cumulative histograms with le buckets).
#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>

namespace finch::serve {

class Metrics {
 public:
  Metrics();
  /// Marks the start of a request on this HTTP thread (latency is measured from here).
  static void start_request();
  /// Counts a finished request by endpoint (unknown paths count as "other") and status, and
  /// its latency since start_request() on this thread.
  void finish_request(const std::string& path, int status);
  void add_images(int64_t n);
  void add_batch(int64_t rows, double forward_seconds);
  void set_model_load_seconds(double seconds);
  /// The /metrics page.
  std::string prometheus_text(int64_t queue_depth) const;

  static constexpr std::array<double, 12> kLatencyBuckets{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                          0.1,   0.25,   0.5,   1,    2.5,   10};
  static constexpr std::array<double, 9> kBatchBuckets{1, 2, 4, 8, 16, 32, 64, 128, 256};

 private:
  mutable std::mutex mutex_;
  std::chrono::steady_clock::time_point started_;
  std::map<std::pair<std::string, int>, int64_t> requests_;
  std::array<int64_t, kLatencyBuckets.size() + 1> latency_{};  // last: +Inf
  double latency_sum_ = 0;
  std::array<int64_t, kBatchBuckets.size() + 1> batches_{};
  double batch_rows_sum_ = 0, forward_seconds_ = 0;
  int64_t images_ = 0;
  double model_load_seconds_ = 0;
};

}  // namespace finch::serve
