#pragma once
// Dynamic batching for `finch serve`: HTTP threads decode and preprocess in parallel and
// submit their images; one batcher thread collects rows until max_batch are waiting or
// max_delay has passed since the oldest waiting request arrived, runs one forward, and hands
// each request its rows. A request with more rows than max_batch spans several batches.
//
// The decisions live in BatchQueue (no threads, no clock of its own: the caller passes the
// time), so they are unit-tested with made-up times; Batcher is the thread around it.
#include <torch/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace finch::serve {

using Clock = std::chrono::steady_clock;

/// What one forward computes for a batch [B, 3, H, W]: logits [B, C] and embeddings [B, D].
using ForwardFn = std::function<std::pair<torch::Tensor, torch::Tensor>(const torch::Tensor&)>;

/// One request's images in, its rows of the model's outputs out.
struct Task {
  torch::Tensor images;  // [N, 3, H, W] preprocessed
  /// The model this request was preprocessed for: batches never mix models, so after a
  /// reload in-flight requests finish on the model they started with.
  std::shared_ptr<const ForwardFn> forward;
  Clock::time_point arrived;
  // Filled by the batcher, row by row, across batches.
  std::vector<torch::Tensor> logits, embeddings;
  int64_t done = 0;
  std::promise<void> finished;
  std::exception_ptr error;
};
using TaskPtr = std::shared_ptr<Task>;

struct BatchOptions {
  int64_t max_batch = 16;
  std::chrono::microseconds max_delay{5000};
  int64_t max_queued_images = 256;  // beyond this, submit() refuses (HTTP 503)
};

/// Rows of some tasks forming one batch: task i contributes rows [begin, begin + count).
struct BatchPlan {
  struct Slice {
    TaskPtr task;
    int64_t begin = 0, count = 0;
  };
  std::vector<Slice> slices;
  int64_t rows() const;
};

class BatchQueue {
 public:
  explicit BatchQueue(BatchOptions options);
  /// Adds a task; false (nothing added) when the queue already holds max_queued_images
  /// rows or the task would exceed it and the queue is not empty.
  bool push(TaskPtr task);
  /// True when a batch should run at `now`: max_batch rows wait, or the oldest waiting
  /// task arrived at least max_delay ago.
  bool ready(Clock::time_point now) const;
  /// When the oldest waiting task's delay runs out (nullopt when empty).
  std::optional<Clock::time_point> deadline() const;
  /// Takes up to max_batch rows, oldest tasks first, splitting a task across batches; a
  /// batch holds one model's tasks of one image size only.
  BatchPlan take();
  int64_t queued_rows() const { return queued_rows_; }
  bool empty() const { return waiting_.empty(); }

 private:
  BatchOptions options_;
  std::deque<std::pair<TaskPtr, int64_t>> waiting_;  // task, rows already taken
  int64_t queued_rows_ = 0;
};

/// Runs a BatchQueue on its own thread.
class Batcher {
 public:
  explicit Batcher(BatchOptions options);
  ~Batcher();  // finishes queued work, then stops
  /// Queues a task for `forward`; nullptr when the queue is full or stopping (the caller
  /// answers 503). Task::finished is set when every row is done (or the forward failed:
  /// Task::error).
  TaskPtr submit(torch::Tensor images, std::shared_ptr<const ForwardFn> forward);
  /// Stops taking work, finishes what is queued, joins the thread.
  void stop();
  int64_t queued_rows() const;
  /// Called on the batcher thread after each batch with its rows and forward seconds.
  void set_observer(std::function<void(int64_t rows, double seconds)> observer);

 private:
  void loop();
  BatchQueue queue_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::function<void(int64_t, double)> observer_;
  std::thread thread_;
};

}  // namespace finch::serve
