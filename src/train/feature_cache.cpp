#include "finch/train/feature_cache.h"

#include <torch/torch.h>

#include <numeric>

#include "finch/core/rng.h"
#include "finch/io/safetensors.h"

namespace finch::train {

namespace fs = std::filesystem;

namespace {

constexpr uint64_t kCacheShuffleStream = 0x46454154;

std::optional<CachedFeatures> read_cache(const fs::path& file, const std::string& key) {
  if (!fs::exists(file)) return std::nullopt;
  try {
    auto tensors = io::read_safetensors(file);
    auto it = tensors.metadata.find("key");
    if (it == tensors.metadata.end() || it->second != key) return std::nullopt;
    CachedFeatures out{tensors.find("embeddings"), tensors.find("labels")};
    if (!out.embeddings.defined() || !out.labels.defined()) return std::nullopt;
    return out;
  } catch (const std::exception&) {
    return std::nullopt;  // a torn or foreign file: recompute
  }
}

}  // namespace

CachedFeatures cached_embeddings(models::Classifier& model, data::Loader& loader,
                                 const torch::Device& device, const fs::path& file,
                                 const std::string& key, ProgressStyle progress_style,
                                 const std::string& label) {
  if (auto cached = read_cache(file, key)) return *cached;
  const bool was_training = model->is_training();
  model->eval();
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> embeddings, labels;
  Progress progress(label, loader.num_batches(), progress_style);
  loader.start_epoch(0);
  int64_t done = 0;
  while (auto batch = loader.next()) {
    auto features = model->backbone()->forward_features(batch->images.to(device));
    embeddings.push_back(model->backbone()->embed(features).to(torch::kCPU, torch::kFloat));
    labels.push_back(batch->labels);
    progress.update(++done, "");
  }
  progress.finish("");
  if (was_training) model->train();
  CachedFeatures out{torch::cat(embeddings), torch::cat(labels)};
  fs::create_directories(file.parent_path());
  io::write_safetensors(file, {{"embeddings", out.embeddings}, {"labels", out.labels}},
                        {{"key", key}});
  return out;
}

CachedBatches::CachedBatches(const CachedFeatures& features, int64_t batch_size, bool drop_last,
                             uint64_t seed)
    : features_(features), batch_size_(batch_size), drop_last_(drop_last), seed_(seed) {}

int64_t CachedBatches::num_batches() const {
  const int64_t n = features_.labels.size(0);
  return drop_last_ ? n / batch_size_ : (n + batch_size_ - 1) / batch_size_;
}

void CachedBatches::start_epoch(int64_t epoch, int64_t first_batch) {
  // Fisher-Yates with finch's counter-based generator: the same order on every machine.
  const int64_t n = features_.labels.size(0);
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  Rng rng(derive_seed(seed_, kCacheShuffleStream, static_cast<uint64_t>(epoch)));
  for (int64_t i = n - 1; i > 0; --i) std::swap(order[i], order[rng.below(i + 1)]);
  order_ = torch::tensor(order, torch::kLong);
  next_batch_ = first_batch;
}

std::optional<std::pair<torch::Tensor, torch::Tensor>> CachedBatches::next() {
  if (next_batch_ >= num_batches()) return std::nullopt;
  const int64_t begin = next_batch_ * batch_size_;
  const int64_t end = std::min<int64_t>(begin + batch_size_, order_.size(0));
  ++next_batch_;
  torch::Tensor rows = order_.slice(0, begin, end);
  return std::make_pair(features_.embeddings.index_select(0, rows),
                        features_.labels.index_select(0, rows));
}

}  // namespace finch::train
