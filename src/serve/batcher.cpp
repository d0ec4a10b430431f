#include "finch/serve/batcher.h"

#include <torch/torch.h>

#include <algorithm>

#include "finch/core/error.h"

namespace finch::serve {

int64_t BatchPlan::rows() const {
  int64_t n = 0;
  for (const auto& s : slices) n += s.count;
  return n;
}

BatchQueue::BatchQueue(BatchOptions options) : options_(options) {
  if (options_.max_batch < 1) throw Error("max batch must be >= 1");
  if (options_.max_queued_images < 1) throw Error("the queue must hold at least one image");
}

bool BatchQueue::push(TaskPtr task) {
  const int64_t rows = task->images.size(0);
  // An oversized request is still taken into an empty queue (it is split into batches).
  if (!waiting_.empty() && queued_rows_ + rows > options_.max_queued_images) return false;
  task->logits.assign(rows, {});
  task->embeddings.assign(rows, {});
  waiting_.emplace_back(std::move(task), 0);
  queued_rows_ += rows;
  return true;
}

bool BatchQueue::ready(Clock::time_point now) const {
  if (waiting_.empty()) return false;
  if (queued_rows_ >= options_.max_batch) return true;
  return now >= *deadline();
}

std::optional<Clock::time_point> BatchQueue::deadline() const {
  if (waiting_.empty()) return std::nullopt;
  return waiting_.front().first->arrived + options_.max_delay;
}

BatchPlan BatchQueue::take() {
  BatchPlan plan;
  int64_t room = options_.max_batch;
  while (room > 0 && !waiting_.empty()) {
    auto& [task, taken] = waiting_.front();
    const int64_t rows = task->images.size(0);
    // Rows of another model or image size wait for the next batch.
    if (!plan.slices.empty() &&
        (task->forward != plan.slices.front().task->forward ||
         task->images.sizes().slice(1) != plan.slices.front().task->images.sizes().slice(1)))
      break;
    const int64_t count = std::min(room, rows - taken);
    plan.slices.push_back({task, taken, count});
    taken += count;
    room -= count;
    queued_rows_ -= count;
    if (taken == rows) waiting_.pop_front();
  }
  return plan;
}

Batcher::Batcher(BatchOptions options) : queue_(options), thread_([this] { loop(); }) {}

Batcher::~Batcher() { stop(); }

TaskPtr Batcher::submit(torch::Tensor images, std::shared_ptr<const ForwardFn> forward) {
  TORCH_CHECK(images.dim() == 4 && images.size(0) > 0, "submit: expected [N, 3, H, W], got ",
              images.sizes());
  TORCH_CHECK(forward, "submit: no forward function");
  auto task = std::make_shared<Task>();
  task->images = std::move(images);
  task->forward = std::move(forward);
  task->arrived = Clock::now();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_ || !queue_.push(task)) return nullptr;
  }
  wake_.notify_one();
  return task;
}

void Batcher::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

int64_t Batcher::queued_rows() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return queue_.queued_rows();
}

void Batcher::set_observer(std::function<void(int64_t, double)> observer) {
  std::lock_guard<std::mutex> lock(mutex_);
  observer_ = std::move(observer);
}

void Batcher::loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    if (queue_.empty()) {
      if (stopping_) return;
      wake_.wait(lock);
      continue;
    }
    // Stopping: run what is queued without waiting for more.
    if (!stopping_ && !queue_.ready(Clock::now())) {
      wake_.wait_until(lock, *queue_.deadline());
      continue;
    }
    BatchPlan plan = queue_.take();
    const auto forward = plan.slices.front().task->forward;
    auto observer = observer_;
    lock.unlock();
    std::vector<torch::Tensor> parts;
    for (const auto& s : plan.slices) parts.push_back(s.task->images.narrow(0, s.begin, s.count));
    std::exception_ptr error;
    torch::Tensor logits, embeddings;
    const auto start = Clock::now();
    try {
      std::tie(logits, embeddings) = (*forward)(parts.size() == 1 ? parts[0] : torch::cat(parts));
    } catch (...) {
      error = std::current_exception();
    }
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    // Metrics first: a client that has its answer finds the batch counted in /metrics.
    if (observer) observer(plan.rows(), seconds);
    int64_t row = 0;
    for (const auto& s : plan.slices) {
      for (int64_t i = 0; i < s.count; ++i, ++row) {
        if (error) continue;
        s.task->logits[s.begin + i] = logits[row];
        if (embeddings.defined()) s.task->embeddings[s.begin + i] = embeddings[row];
      }
      if (error && !s.task->error) s.task->error = error;
      s.task->done += s.count;
      if (s.task->done == s.task->images.size(0)) s.task->finished.set_value();
    }
    lock.lock();
  }
}

}  // namespace finch::serve
