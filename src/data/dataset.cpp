#include "finch/data/dataset.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "finch/core/error.h"
#include "finch/core/rng.h"

namespace finch::data {

std::vector<int64_t> Dataset::labels() const {
  std::vector<int64_t> out(size());
  for (size_t i = 0; i < out.size(); ++i) out[i] = label(i);
  return out;
}

SubsetDataset::SubsetDataset(DatasetPtr base, std::vector<size_t> indices)
    : base_(std::move(base)), indices_(std::move(indices)) {
  if (!base_) throw Error("SubsetDataset: the base dataset is null");
  for (size_t index : indices_)
    if (index >= base_->size())
      throw Error("SubsetDataset: index " + std::to_string(index) +
                  " is out of range for a dataset of " + std::to_string(base_->size()) +
                  " samples");
}

std::pair<std::vector<size_t>, std::vector<size_t>> stratified_split(
    const std::vector<int64_t>& labels, double fraction, uint64_t seed) {
  if (!(fraction >= 0.0 && fraction <= 1.0))
    throw Error("stratified_split: fraction must be in [0, 1], got " + std::to_string(fraction));
  std::map<int64_t, std::vector<size_t>> by_class;
  for (size_t i = 0; i < labels.size(); ++i) by_class[labels[i]].push_back(i);

  std::vector<size_t> first, second;
  for (auto& [label, members] : by_class) {
    // One stream per class, so a class's split does not depend on the other classes.
    Rng rng(derive_seed(seed, static_cast<uint64_t>(label), 0x5EED5B17ull));
    for (size_t i = members.size(); i > 1; --i) std::swap(members[i - 1], members[rng.below(i)]);
    size_t n = members.size();
    auto take = static_cast<size_t>(std::llround(fraction * static_cast<double>(n)));
    if (fraction > 0.0 && n >= 2) {
      take = std::max<size_t>(take, 1);
      // Below fraction 1, every class with >= 2 samples keeps at least one in the first list.
      if (fraction < 1.0) take = std::min(take, n - 1);
    }
    take = std::min(take, n);
    second.insert(second.end(), members.begin(), members.begin() + take);
    first.insert(first.end(), members.begin() + take, members.end());
  }
  std::sort(first.begin(), first.end());
  std::sort(second.begin(), second.end());
  return {std::move(first), std::move(second)};
}

}  // namespace finch::data
