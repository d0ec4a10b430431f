#include "finch/serve/metrics.h"

#include <fmt/format.h>

#include <set>

namespace finch::serve {

namespace {

thread_local std::chrono::steady_clock::time_point request_started;

// Label values are the known routes only, so hostile paths cannot grow the metric set.
std::string endpoint_label(const std::string& path) {
  static const std::set<std::string> kKnown{"/",           "/healthz",        "/readyz",
                                            "/metrics",    "/v1/model",       "/v1/openapi.json",
                                            "/v1/predict", "/v1/embed",       "/v1/search",
                                            "/v1/explain", "/v1/admin/reload"};
  return kKnown.count(path) ? path : "other";
}

template <size_t N>
void observe(std::array<int64_t, N + 1>& counts, const std::array<double, N>& bounds, double v) {
  size_t i = 0;
  while (i < N && v > bounds[i]) ++i;
  ++counts[i];
}

template <size_t N>
std::string histogram(const std::string& name, const std::string& help,
                      const std::array<int64_t, N + 1>& counts, const std::array<double, N>& bounds,
                      double sum) {
  std::string out = fmt::format("# HELP {0} {1}\n# TYPE {0} histogram\n", name, help);
  int64_t cumulative = 0;
  for (size_t i = 0; i < N; ++i) {
    cumulative += counts[i];
    out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, bounds[i], cumulative);
  }
  cumulative += counts[N];
  out += fmt::format("{0}_bucket{{le=\"+Inf\"}} {1}\n{0}_sum {2}\n{0}_count {1}\n", name,
                     cumulative, sum);
  return out;
}

}  // namespace

Metrics::Metrics() : started_(std::chrono::steady_clock::now()) {}

void Metrics::start_request() { request_started = std::chrono::steady_clock::now(); }

void Metrics::finish_request(const std::string& path, int status) {
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - request_started).count();
  std::lock_guard<std::mutex> lock(mutex_);
  ++requests_[{endpoint_label(path), status}];
  observe<kLatencyBuckets.size()>(latency_, kLatencyBuckets, seconds);
  latency_sum_ += seconds;
}

void Metrics::add_images(int64_t n) {
  std::lock_guard<std::mutex> lock(mutex_);
  images_ += n;
}

void Metrics::add_batch(int64_t rows, double forward_seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  observe<kBatchBuckets.size()>(batches_, kBatchBuckets, static_cast<double>(rows));
  batch_rows_sum_ += static_cast<double>(rows);
  forward_seconds_ += forward_seconds;
}

void Metrics::set_model_load_seconds(double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  model_load_seconds_ = seconds;
}

std::string Metrics::prometheus_text(int64_t queue_depth) const {
  std::lock_guard<std::mutex> lock(mutex_);
  const double uptime =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  std::string out =
      "# HELP finch_requests_total HTTP requests by endpoint and status code.\n"
      "# TYPE finch_requests_total counter\n";
  for (const auto& [key, count] : requests_)
    out += fmt::format("finch_requests_total{{endpoint=\"{}\",code=\"{}\"}} {}\n", key.first,
                       key.second, count);
  out += histogram<kLatencyBuckets.size()>("finch_request_duration_seconds",
                                           "Request latency, from routing to the response.",
                                           latency_, kLatencyBuckets, latency_sum_);
  out += histogram<kBatchBuckets.size()>("finch_batch_size", "Images per model forward.", batches_,
                                         kBatchBuckets, batch_rows_sum_);
  out += fmt::format(
      "# HELP finch_forward_seconds_total Time spent in model forwards.\n"
      "# TYPE finch_forward_seconds_total counter\nfinch_forward_seconds_total {}\n"
      "# HELP finch_images_total Images answered.\n# TYPE finch_images_total counter\n"
      "finch_images_total {}\n"
      "# HELP finch_images_per_second Images answered per second since start.\n"
      "# TYPE finch_images_per_second gauge\nfinch_images_per_second {}\n"
      "# HELP finch_queue_images Images waiting for a batch.\n# TYPE finch_queue_images gauge\n"
      "finch_queue_images {}\n"
      "# HELP finch_model_load_seconds Time the current model took to load.\n"
      "# TYPE finch_model_load_seconds gauge\nfinch_model_load_seconds {}\n"
      "# HELP finch_uptime_seconds Seconds since the server started.\n"
      "# TYPE finch_uptime_seconds gauge\nfinch_uptime_seconds {}\n",
      forward_seconds_, images_, uptime > 0 ? images_ / uptime : 0.0, queue_depth,
      model_load_seconds_, uptime);
  return out;
}

}  // namespace finch::serve
