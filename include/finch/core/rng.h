#pragma once
// Counter-based randomness: every random decision is a pure function of
// (seed, epoch, sample index, stream), so results do not depend on thread scheduling.
#include <cstdint>

namespace finch {

/// SplitMix64 finaliser: a good 64-bit mix of one value.
inline uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

/// Derives one seed from several keys (seed, epoch, index, ...).
inline uint64_t derive_seed(uint64_t a, uint64_t b = 0, uint64_t c = 0, uint64_t d = 0) {
  return mix64(mix64(mix64(mix64(a) ^ b) ^ c) ^ d);
}

/// Small fast generator (xoshiro-like splitmix stream) for per-sample augmentation.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(mix64(seed)) {}  // nearby seeds give unrelated streams
  uint64_t next_u64() { return mix64(state_++); }
  /// Uniform in [0, 1).
  double uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }
  /// Uniform in [lo, hi).
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  /// Uniform integer in [0, n).
  uint64_t below(uint64_t n) { return n == 0 ? 0 : next_u64() % n; }
  bool bernoulli(double p) { return uniform() < p; }

 private:
  uint64_t state_;
};

}  // namespace finch
