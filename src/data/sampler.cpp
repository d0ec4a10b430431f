#include "finch/data/sampler.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <string>

#include "finch/core/error.h"
#include "finch/core/rng.h"

namespace finch::data {

namespace {

constexpr uint64_t kPkStream = 0x504b;
constexpr uint64_t kBalancedStream = 0x42414c;

template <typename T>
void shuffle(std::vector<T>& v, Rng& rng) {
  for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[rng.below(i)]);
}

}  // namespace

std::vector<size_t> balanced_order(const std::vector<int64_t>& labels, double power, uint64_t seed,
                                   int64_t epoch) {
  if (!(power >= 0 && power <= 1))
    throw Error(
        "data.balance_power must be in [0, 1] (0: natural frequencies, 1: uniform over "
        "classes, 0.5: square-root sampling), got " +
        std::to_string(power));
  std::map<int64_t, std::vector<size_t>> by_class;
  for (size_t i = 0; i < labels.size(); ++i) by_class[labels[i]].push_back(i);
  std::vector<const std::vector<size_t>*> pools;
  std::vector<double> cumulative;
  double total = 0;
  for (const auto& [label, indices] : by_class) {
    total += std::pow(static_cast<double>(indices.size()), 1.0 - power);
    pools.push_back(&indices);
    cumulative.push_back(total);
  }
  Rng rng(derive_seed(seed, kBalancedStream, static_cast<uint64_t>(epoch)));
  std::vector<size_t> order;
  order.reserve(labels.size());
  for (size_t k = 0; k < labels.size(); ++k) {
    const double u = rng.uniform() * total;
    const size_t c =
        std::min(pools.size() - 1,
                 static_cast<size_t>(std::upper_bound(cumulative.begin(), cumulative.end(), u) -
                                     cumulative.begin()));
    const auto& pool = *pools[c];
    order.push_back(pool[rng.below(pool.size())]);
  }
  return order;
}

std::vector<size_t> pk_order(const std::vector<int64_t>& labels, int64_t classes_per_batch,
                             int64_t per_class, uint64_t seed, int64_t epoch) {
  if (classes_per_batch < 1 || per_class < 1)
    throw Error("data.sampler pk: train.batch_size must be a multiple of data.samples_per_class");
  std::map<int64_t, std::vector<size_t>> by_class;
  for (size_t i = 0; i < labels.size(); ++i) by_class[labels[i]].push_back(i);
  if (static_cast<int64_t>(by_class.size()) < classes_per_batch)
    throw Error("data.sampler pk: a batch needs " + std::to_string(classes_per_batch) +
                " classes but the training data has " + std::to_string(by_class.size()) +
                "; lower train.batch_size or raise data.samples_per_class");
  Rng rng(derive_seed(seed, kPkStream, static_cast<uint64_t>(epoch)));
  std::vector<std::vector<size_t>> pools;
  for (auto& [label, indices] : by_class) {
    shuffle(indices, rng);
    pools.push_back(indices);
  }
  std::vector<size_t> cursor(pools.size(), 0), classes(pools.size());
  std::iota(classes.begin(), classes.end(), size_t{0});
  const int64_t batch = classes_per_batch * per_class;
  const int64_t batches = static_cast<int64_t>(labels.size()) / batch;
  std::vector<size_t> order;
  order.reserve(batches * batch);
  for (int64_t b = 0; b < batches; ++b) {
    shuffle(classes, rng);  // the first P of a fresh permutation: P distinct classes
    for (int64_t p = 0; p < classes_per_batch; ++p) {
      auto& pool = pools[classes[p]];
      for (int64_t k = 0; k < per_class; ++k) {
        if (cursor[classes[p]] == pool.size()) {  // class exhausted: reshuffle and cycle
          shuffle(pool, rng);
          cursor[classes[p]] = 0;
        }
        order.push_back(pool[cursor[classes[p]]++]);
      }
    }
  }
  return order;
}

}  // namespace finch::data
