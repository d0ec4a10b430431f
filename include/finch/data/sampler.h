#pragma once
// Class-balanced "P x K" batches for metric learning (triplet loss needs several samples of a
// class in every batch): `data.sampler: pk` with data.samples_per_class K and
// P = train.batch_size / K classes per batch.
#include <cstdint>
#include <vector>

namespace finch::data {

/// An epoch's sample order in which every consecutive P x K indices hold K samples of each of
/// P distinct classes (classes chosen at random, each class's samples in a reshuffled cycle, so
/// a class with fewer than K samples repeats some). Length (labels.size() / (P K)) x P K.
/// Depends only on (labels, P, K, seed, epoch). Throws finch::Error when fewer than P classes
/// have samples.
std::vector<size_t> pk_order(const std::vector<int64_t>& labels, int64_t classes_per_batch,
                             int64_t per_class, uint64_t seed, int64_t epoch);

/// Class-balanced sampling for long-tailed data (`data.sampler: balanced`): an epoch of
/// labels.size() indices drawn with replacement, class c with probability proportional to
/// n_c^(1 - power) and uniformly within it: power 0 keeps the natural frequencies, 1 gives
/// every class the same share, 0.5 is square-root sampling (Mahajan et al. 2018). Depends only
/// on (labels, power, seed, epoch). Throws finch::Error for a power outside [0, 1].
std::vector<size_t> balanced_order(const std::vector<int64_t>& labels, double power, uint64_t seed,
                                   int64_t epoch);

}  // namespace finch::data
