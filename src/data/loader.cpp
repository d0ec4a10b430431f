#include "finch/data/loader.h"

#include <omp.h>
#include <torch/torch.h>

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <map>
#include <mutex>
#include <numeric>
#include <thread>

#include "finch/core/error.h"
#include "finch/core/rng.h"

namespace finch::data {

namespace {

// Stream ids keep the shuffle and the augmentation randomness independent.
constexpr uint64_t kShuffleStream = 0x5348;
constexpr uint64_t kAugmentStream = 0x4155;

struct BatchResult {
  std::optional<Batch> batch;
  std::vector<SkippedSample> skipped;
  std::exception_ptr error;
};

}  // namespace

// Batch tensors are large (32 x 3 x 448 x 448 floats are 77 MB), above glibc's largest mmap
// threshold (32 MiB), so every fresh one is mapped anew and page-faulted in as the worker
// writes it: on a VM that cost more than decoding the JPEGs. A batch's memory comes back here
// when the last tensor using it is dropped and goes to a later batch of the same size.
class Loader::BufferPool : public std::enable_shared_from_this<BufferPool> {
 public:
  explicit BufferPool(size_t keep) : keep_(keep) {}
  ~BufferPool() {
    for (const auto& [bytes, data] : free_) std::free(data);
  }

  torch::Tensor float_tensor(const std::vector<int64_t>& shape) {
    size_t bytes = sizeof(float);
    for (int64_t d : shape) bytes *= static_cast<size_t>(d);
    void* data = nullptr;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (auto it = free_.begin(); it != free_.end(); ++it) {
        if (it->first == bytes) {
          data = it->second;
          free_.erase(it);
          break;
        }
      }
    }
    if (data == nullptr) data = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (data == nullptr) throw std::bad_alloc();
    // The deleter holds the pool, so a batch may outlive the Loader.
    auto self = shared_from_this();
    return torch::from_blob(
        data, shape, [self, bytes](void* p) { self->give_back(p, bytes); },
        torch::TensorOptions().dtype(torch::kFloat32));
  }

 private:
  void give_back(void* data, size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (free_.size() < keep_) {
        free_.emplace_back(bytes, data);
        return;
      }
    }
    std::free(data);
  }

  std::mutex mutex_;
  size_t keep_;
  std::vector<std::pair<size_t, void*>> free_;
};

std::vector<size_t> epoch_order(size_t size, bool shuffle, uint64_t seed, int64_t epoch) {
  std::vector<size_t> order(size);
  std::iota(order.begin(), order.end(), size_t{0});
  if (shuffle) {
    Rng rng(derive_seed(seed, kShuffleStream, static_cast<uint64_t>(epoch)));
    for (size_t i = size; i > 1; --i) std::swap(order[i - 1], order[rng.below(i)]);  // Fisher-Yates
  }
  return order;
}

std::vector<size_t> shard_order(const std::vector<size_t>& order, int rank, int world, bool pad) {
  if (world < 1 || rank < 0 || rank >= world)
    throw Error("shard " + std::to_string(rank) + " of " + std::to_string(world) +
                " does not exist");
  const size_t n = order.size();
  const size_t w = static_cast<size_t>(world);
  const size_t padded = pad ? (n + w - 1) / w * w : n;
  std::vector<size_t> shard;
  shard.reserve(padded / w + 1);
  // Padding repeats the order from its beginning (several times when it is shorter than the
  // world, as DistributedSampler does).
  for (size_t k = static_cast<size_t>(rank); k < padded && n > 0; k += w)
    shard.push_back(order[k % n]);
  return shard;
}

struct Loader::State {
  std::mutex mutex;
  std::condition_variable changed;
  std::vector<size_t> order;
  int64_t epoch = 0;
  int64_t next_to_claim = 0;
  int64_t next_to_deliver = 0;
  bool stop = false;
  std::map<int64_t, BatchResult> ready;
  std::vector<SkippedSample> skipped;
  std::vector<std::thread> workers;
};

Loader::Loader(DatasetPtr dataset, Pipeline pipeline, LoaderOptions options)
    : dataset_(std::move(dataset)),
      pipeline_(std::move(pipeline)),
      options_(options),
      state_(std::make_unique<State>()) {
  if (options_.batch_size < 1) throw Error("batch size must be >= 1");
  options_.workers = std::max(1, options_.workers);
  options_.prefetch = std::max(1, options_.prefetch);
  // Enough for every batch in flight: queued, being built, and held by the consumer.
  buffers_ = std::make_shared<BufferPool>(options_.prefetch + options_.workers + 2);
  if (options_.shard_count < 1 || options_.shard_rank < 0 ||
      options_.shard_rank >= options_.shard_count)
    throw Error("loader shard " + std::to_string(options_.shard_rank) + " of " +
                std::to_string(options_.shard_count) + " does not exist");
  // Every epoch's order has the same length (a custom order, e.g. P x K batches, is as long as
  // its epoch 0); a shard takes every world-th position of it.
  const int64_t n = options_.order ? static_cast<int64_t>(options_.order(0).size())
                                   : static_cast<int64_t>(dataset_->size());
  const int64_t world = options_.shard_count, rank = options_.shard_rank;
  epoch_samples_ = world == 1            ? n
                   : options_.pad_shards ? (n + world - 1) / world
                                         : std::max<int64_t>(0, (n - rank + world - 1) / world);
}

std::vector<size_t> Loader::order_of(int64_t epoch) const {
  std::vector<size_t> order =
      options_.order ? options_.order(epoch)
                     : epoch_order(dataset_->size(), options_.shuffle, options_.seed, epoch);
  if (options_.shard_count == 1) return order;
  return shard_order(order, options_.shard_rank, options_.shard_count, options_.pad_shards);
}

Loader::~Loader() { stop_workers(); }

int64_t Loader::num_samples() const { return epoch_samples_; }

int64_t Loader::num_batches() const {
  const int64_t n = epoch_samples_;
  return options_.drop_last ? n / options_.batch_size
                            : (n + options_.batch_size - 1) / options_.batch_size;
}

void Loader::stop_workers() {
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    state_->stop = true;
  }
  state_->changed.notify_all();
  for (auto& worker : state_->workers) worker.join();
  state_->workers.clear();
}

void Loader::start_epoch(int64_t epoch, int64_t first_batch) {
  stop_workers();
  State& s = *state_;
  s.stop = false;
  s.epoch = epoch;
  s.order = order_of(epoch);
  s.next_to_claim = s.next_to_deliver = std::clamp<int64_t>(first_batch, 0, num_batches());
  s.ready.clear();
  s.skipped.clear();

  const int64_t total = num_batches();
  auto build = [this, &s](int64_t b) {
    BatchResult result;
    try {
      const int64_t begin = b * options_.batch_size;
      const int64_t end = std::min<int64_t>(begin + options_.batch_size, s.order.size());
      // Image ops per sample (uint8, small); then each sample is normalised straight into
      // its row of the batch tensor and the tensor ops run on that row in place.
      std::vector<cv::Mat> images;
      std::vector<Rng> rngs;
      std::vector<int64_t> labels;
      std::vector<size_t> indices;
      for (int64_t k = begin; k < end; ++k) {
        const size_t index = s.order[k];
        Rng rng(derive_seed(options_.seed, kAugmentStream, static_cast<uint64_t>(s.epoch), index));
        cv::Mat image;
        try {
          image = pipeline_.apply_image(dataset_->load_rgb(index), rng);
        } catch (const Error& e) {
          if (options_.strict) throw;
          result.skipped.push_back({index, e.what()});
          continue;
        }
        if (!images.empty() && image.size() != images.front().size()) {
          throw Error("sample " + dataset_->describe(index) + " becomes a " +
                      std::to_string(image.rows) + "x" + std::to_string(image.cols) +
                      " tensor but the batch is " + std::to_string(images.front().rows) + "x" +
                      std::to_string(images.front().cols) +
                      "; add a resize/center_crop transform so every image has the same size");
        }
        images.push_back(std::move(image));
        rngs.push_back(rng);
        labels.push_back(dataset_->label(index));
        indices.push_back(index);
      }
      if (!images.empty()) {
        const int64_t rows = images.front().rows, cols = images.front().cols;
        torch::Tensor stacked =
            buffers_->float_tensor({static_cast<int64_t>(images.size()), 3, rows, cols});
        float* out = stacked.data_ptr<float>();
        for (size_t i = 0; i < images.size(); ++i) {
          pipeline_.normalize_into(images[i], out + i * 3 * rows * cols);
          if (pipeline_.has_tensor_ops()) {
            torch::Tensor row = stacked[static_cast<int64_t>(i)];
            pipeline_.apply_tensor_ops(row, rngs[i]);
          }
        }
        result.batch = Batch{stacked, torch::tensor(labels, torch::kInt64), indices};
      }
    } catch (...) {
      result.error = std::current_exception();
    }
    return result;
  };

  for (int w = 0; w < options_.workers; ++w) {
    s.workers.emplace_back([this, &s, total, build] {
      // Each sample is small work: an OpenMP team per worker thread would only oversubscribe
      // the cores the training step's own intra-op threads need.
      omp_set_num_threads(1);
      while (true) {
        int64_t b;
        {
          std::unique_lock<std::mutex> lock(s.mutex);
          s.changed.wait(lock, [&] {
            return s.stop || (s.next_to_claim < total &&
                              s.next_to_claim < s.next_to_deliver + options_.prefetch);
          });
          if (s.stop) return;
          b = s.next_to_claim++;
        }
        BatchResult result = build(b);
        {
          std::lock_guard<std::mutex> lock(s.mutex);
          s.ready.emplace(b, std::move(result));
        }
        s.changed.notify_all();
      }
    });
  }
}

std::optional<Batch> Loader::next() {
  State& s = *state_;
  const int64_t total = num_batches();
  while (true) {
    BatchResult result;
    {
      std::unique_lock<std::mutex> lock(s.mutex);
      if (s.next_to_deliver >= total) return std::nullopt;
      if (s.workers.empty()) throw std::logic_error("Loader::next called before start_epoch");
      s.changed.wait(lock, [&] { return s.ready.count(s.next_to_deliver) > 0; });
      auto it = s.ready.find(s.next_to_deliver);
      result = std::move(it->second);
      s.ready.erase(it);
      ++s.next_to_deliver;
      s.skipped.insert(s.skipped.end(), result.skipped.begin(), result.skipped.end());
    }
    s.changed.notify_all();
    if (result.error) std::rethrow_exception(result.error);
    if (result.batch) return result.batch;  // else every sample was unreadable: move on
  }
}

std::vector<SkippedSample> Loader::skipped() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->skipped;
}

}  // namespace finch::data
