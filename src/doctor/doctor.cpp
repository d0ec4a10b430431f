// The doctor's pass: open every split, inspect every image in parallel, then the
// dataset-wide checks (duplicates and leaks, model signals, bias). Outputs are in outputs.cpp,
// the model-based signals in model_signals.cpp.
#include "finch/doctor/doctor.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "doctor_internal.h"
#include "finch/core/error.h"
#include "finch/core/threads.h"
#include "finch/data/formats.h"
#include "finch/data/from_config.h"

namespace finch::doctor {

namespace fs = std::filesystem;

namespace detail {

int thread_count(int threads) { return choose_threads(threads); }

void parallel_for(size_t n, int threads, const std::string& label, ProgressStyle style,
                  const std::function<void(size_t)>& body) {
  Progress progress(label, static_cast<int64_t>(n), style);
  std::atomic<size_t> next{0}, done{0};
  std::mutex progress_mutex;
  std::exception_ptr failure;
  auto work = [&] {
    try {
      for (size_t i; (i = next.fetch_add(1)) < n;) {
        body(i);
        const size_t finished = done.fetch_add(1) + 1;
        if (finished % 256 == 0) {
          std::lock_guard<std::mutex> lock(progress_mutex);
          progress.update(static_cast<int64_t>(finished), "");
        }
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(progress_mutex);
      if (!failure) failure = std::current_exception();
      next = n;
    }
  };
  std::vector<std::thread> pool;
  const int count = std::max(1, std::min<int>(thread_count(threads), static_cast<int>(n)));
  for (int t = 1; t < count; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  if (failure) std::rethrow_exception(failure);
  progress.finish(fmt::format("{} images", n));
}

int split_priority(const std::string& split) {
  // The copy kept of a duplicate: evaluation splits are never the ones thinned.
  if (split == "test") return 3;
  if (split == "val") return 2;
  if (split == "train") return 0;
  return 1;
}

size_t keeper_of(const DoctorReport& r, size_t a, size_t b) {
  const int pa = split_priority(r.items[a].split), pb = split_priority(r.items[b].split);
  if (pa != pb) return pa > pb ? a : b;
  const int64_t na = int64_t{r.facts[a].width} * r.facts[a].height;
  const int64_t nb = int64_t{r.facts[b].width} * r.facts[b].height;
  if (na != nb) return na > nb ? a : b;
  return std::min(a, b);
}

void add_pair(DoctorReport& r, size_t a, size_t b, const std::string& kind, double distance,
              std::vector<bool>& dropped) {
  const size_t keep = keeper_of(r, a, b), other = keep == a ? b : a;
  DuplicatePair pair;
  pair.a = keep;
  pair.b = other;
  pair.kind = kind;
  pair.distance = distance;
  pair.across_splits = r.items[keep].split != r.items[other].split;
  pair.conflicting_labels = r.items[keep].label != r.items[other].label;
  r.duplicates.push_back(pair);
  const std::string what =
      kind == "exact"   ? "the same pixels as"
      : kind == "phash" ? fmt::format("perceptual hash {} bits from", static_cast<int>(distance))
                        : fmt::format("embedding cosine {:.4f} with", 1 - distance);
  const std::string labels = pair.conflicting_labels ? fmt::format(" (labelled {} there, {} here)",
                                                                   r.classes[r.items[keep].label],
                                                                   r.classes[r.items[other].label])
                                                     : "";
  const std::string detail = r.items[keep].path;
  if (pair.across_splits) {
    // A leak is reported whatever else was found: the evaluation would be inflated by it.
    r.flags.push_back(
        {other, "leak",
         fmt::format("{} {} of split '{}'{}", what, detail, r.items[keep].split, labels), distance,
         keep});
    dropped[other] = true;
    return;
  }
  if (kind == "exact" && pair.conflicting_labels) {
    // Same pixels, two labels: at least one label is wrong, and which one is for a person.
    r.flags.push_back({other, "conflicting_labels", what + " " + detail + labels, 0, keep});
    r.flags.push_back(
        {keep, "conflicting_labels",
         "the same pixels as " + r.items[other].path +
             fmt::format(" (labelled {} there, {} here)", r.classes[r.items[other].label],
                         r.classes[r.items[keep].label]),
         0, other});
    dropped[other] = dropped[keep] = true;
    return;
  }
  // Within a split, one copy of each pair stays: a pair whose copy is already gone adds none.
  if (dropped[other] || dropped[keep]) return;
  r.flags.push_back({other, kind == "exact" ? "exact_duplicate" : "near_duplicate",
                     what + " " + detail + labels, distance, keep});
  dropped[other] = true;
}

}  // namespace detail

using namespace detail;

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::string relative_to_root(const std::string& where, const fs::path& root) {
  const fs::path p(where);
  if (p.is_relative()) return where;
  const fs::path rel = p.lexically_relative(root);
  if (rel.empty() || *rel.begin() == "..") return where;
  return rel.generic_string();
}

void find_exact_duplicates(DoctorReport& r, std::vector<bool>& dropped) {
  std::unordered_map<std::string, std::vector<size_t>> by_hash;
  for (size_t i = 0; i < r.items.size(); ++i)
    if (r.facts[i].decoded) by_hash[r.facts[i].pixel_hash].push_back(i);
  std::vector<std::vector<size_t>> groups;
  for (auto& [hash, members] : by_hash)
    if (members.size() > 1) groups.push_back(std::move(members));
  std::sort(groups.begin(), groups.end());  // by first member: a stable report
  for (const auto& members : groups) {
    size_t keep = members[0];
    for (size_t m : members) keep = keeper_of(r, keep, m);
    for (size_t m : members)
      if (m != keep) add_pair(r, keep, m, "exact", 0, dropped);
  }
}

// Every pair of decoded images whose perceptual hashes (or one's and the other's mirror
// image's) are within `distance` bits and whose 16 x 16 thumbnails differ by at most
// `pixel_difference` grey levels on average, exact duplicates left out. Brute force over
// 64-bit words: 70,000 images are 2.4 billion XOR + popcounts, seconds on two cores.
void find_phash_duplicates(DoctorReport& r, const DoctorOptions& options,
                           std::vector<bool>& dropped) {
  std::vector<size_t> decoded;
  for (size_t i = 0; i < r.items.size(); ++i)
    if (r.facts[i].decoded) decoded.push_back(i);
  const size_t n = decoded.size();
  std::vector<uint64_t> hash(n), mirrored(n);
  for (size_t k = 0; k < n; ++k) {
    hash[k] = r.facts[decoded[k]].phash;
    mirrored[k] = r.facts[decoded[k]].phash_flipped;
  }
  constexpr size_t kMaxPairs = 200000;
  std::mutex mutex;
  std::vector<std::tuple<int, size_t, size_t>> pairs;
  size_t overflow = 0;
  const int limit = options.phash_distance;
  parallel_for(n, options.threads, "near-duplicates", options.progress, [&](size_t a) {
    std::vector<std::tuple<int, size_t, size_t>> mine;
    for (size_t b = a + 1; b < n; ++b) {
      const int d = std::min(hamming(hash[a], hash[b]), hamming(hash[a], mirrored[b]));
      if (d > limit) continue;
      const ImageFacts &fa = r.facts[decoded[a]], &fb = r.facts[decoded[b]];
      if (fa.pixel_hash != fb.pixel_hash &&
          thumbnail_difference(fa, fb) <= options.pixel_difference)
        mine.emplace_back(d, decoded[a], decoded[b]);
    }
    if (mine.empty()) return;
    std::lock_guard<std::mutex> lock(mutex);
    for (auto& p : mine) {
      if (pairs.size() < kMaxPairs)
        pairs.push_back(p);
      else
        ++overflow;
    }
  });
  std::sort(pairs.begin(), pairs.end());  // closest first, then by position
  for (const auto& [d, a, b] : pairs) add_pair(r, a, b, "phash", d, dropped);
  r.phash_pairs_dropped = overflow;
}

nlohmann::json bias_figures(const DoctorReport& r, double beta) {
  nlohmann::json out = nlohmann::json::object();
  std::map<std::string, std::vector<int64_t>> counts;
  for (const auto& item : r.items) {
    auto& c = counts[item.split];
    if (c.empty()) c.assign(r.classes.size(), 0);
    ++c[item.label];
  }
  for (const auto& [split, c] : counts) {
    int64_t most = 0, least = INT64_MAX, total = 0;
    size_t empty = 0;
    nlohmann::json per_class = nlohmann::json::array();
    for (size_t k = 0; k < c.size(); ++k) {
      most = std::max(most, c[k]);
      if (c[k] > 0) least = std::min(least, c[k]);
      empty += c[k] == 0;
      total += c[k];
      // Cui et al. 2019: the expected number of distinct samples, (1 - beta^n) / (1 - beta).
      const double effective = (1 - std::pow(beta, static_cast<double>(c[k]))) / (1 - beta);
      per_class.push_back({{"class", r.classes[k]}, {"images", c[k]}, {"effective", effective}});
    }
    out["splits"][split] = {
        {"images", total},
        {"classes_without_images", empty},
        {"largest_class", most},
        {"smallest_class", least == INT64_MAX ? 0 : least},
        {"imbalance_ratio", least == INT64_MAX ? 0.0 : double(most) / double(least)},
        {"effective_number_beta", beta},
        {"per_class", per_class}};
  }
  return out;
}

}  // namespace

DoctorOptions doctor_options(const Config& config) {
  DoctorOptions o;
  Thresholds& t = o.thresholds;
  t.blur = config.get<double>("doctor.blur");
  t.dark = config.get<double>("doctor.dark");
  t.bright = config.get<double>("doctor.bright");
  t.low_information = config.get<double>("doctor.low_information");
  t.near_constant = config.get<double>("doctor.near_constant");
  t.min_side = config.get<int>("doctor.min_side");
  t.max_aspect = config.get<double>("doctor.max_aspect");
  t.max_pixels = config.get<int64_t>("data.max_pixels");
  o.phash_distance = config.get<int>("doctor.phash_distance");
  o.pixel_difference = config.get<double>("doctor.pixel_difference");
  o.embedding_similarity = config.get<double>("doctor.embedding_similarity");
  o.embedding_ratio = config.get<double>("doctor.embedding_ratio");
  if (!(o.embedding_ratio > 0 && o.embedding_ratio <= 1))
    throw Error(fmt::format("doctor.embedding_ratio must be in (0, 1], got {}", o.embedding_ratio));
  o.outlier_k = config.get<int>("doctor.outlier_k");
  o.outlier_share = config.get<double>("doctor.outlier_share");
  o.label_method = parse_label_issue_method(config.get<std::string>("doctor.label_method"));
  o.drop = config.get<std::vector<std::string>>("doctor.drop");
  o.effective_number_beta = config.get<double>("doctor.effective_number_beta");
  o.threads = config.get<int>("threads");
  o.thumbnails = config.get<int>("doctor.thumbnails");
  if (o.thumbnails < 0) throw Error("doctor.thumbnails must be >= 0 (0: all)");
  if (o.phash_distance < 0 || o.phash_distance > 32)
    throw Error(
        fmt::format("doctor.phash_distance must be in [0, 32] bits, got {}", o.phash_distance));
  if (o.embedding_similarity <= 0 || o.embedding_similarity > 1)
    throw Error(fmt::format("doctor.embedding_similarity must be in (0, 1], got {}",
                            o.embedding_similarity));
  if (o.outlier_k < 1) throw Error("doctor.outlier_k must be at least 1");
  if (o.outlier_share < 0 || o.outlier_share > 1)
    throw Error(fmt::format("doctor.outlier_share must be in [0, 1], got {}", o.outlier_share));
  if (o.effective_number_beta <= 0 || o.effective_number_beta >= 1)
    throw Error("doctor.effective_number_beta must be in (0, 1)");
  for (const auto& reason : o.drop) {
    const auto& known = reason_titles();
    if (std::none_of(known.begin(), known.end(),
                     [&](const auto& k) { return k.first == reason; })) {
      std::string names;
      for (const auto& k : known) names += (names.empty() ? "" : ", ") + k.first;
      throw Error(fmt::format("doctor.drop: unknown reason '{}' (reasons: {})", reason, names));
    }
  }
  return o;
}

DoctorReport run_doctor(const Config& config_in, const DoctorOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  Config config = config_in;
  // The doctor looks at the images as stored: no box crop, no exclusion list.
  config.set("data.crop_to_box", "false");
  config.set_string("data.exclude", "");
  const std::string format = config.get<std::string>("data.format");
  const fs::path root = config.get<std::string>("data.root");
  if (!options.out.empty()) {
    const fs::path out = fs::weakly_canonical(options.out), data_root = fs::weakly_canonical(root);
    const fs::path rel = out.lexically_relative(data_root);
    if (!rel.empty() && *rel.begin() != "..")
      throw Error("--out " + options.out.string() + " is inside the dataset folder " +
                  root.string() + ": the doctor never writes there; choose another folder");
  }
  DoctorReport r;
  r.thresholds = {{"blur", options.thresholds.blur},
                  {"dark", options.thresholds.dark},
                  {"bright", options.thresholds.bright},
                  {"low_information", options.thresholds.low_information},
                  {"near_constant", options.thresholds.near_constant},
                  {"min_side", options.thresholds.min_side},
                  {"max_aspect", options.thresholds.max_aspect},
                  {"max_pixels", options.thresholds.max_pixels},
                  {"phash_distance", options.phash_distance},
                  {"pixel_difference", options.pixel_difference},
                  {"embedding_similarity", options.embedding_similarity},
                  {"embedding_ratio", options.embedding_ratio},
                  {"outlier_k", options.outlier_k},
                  {"outlier_share", options.outlier_share}};

  // Every split, one item list.
  std::vector<data::DatasetPtr> datasets;
  std::map<std::string, size_t> dataset_of_split;  // split -> its dataset in `datasets`
  nlohmann::json splits = nlohmann::json::object();
  for (const std::string& split : data::dataset_format(format).splits(root, config.node("data"))) {
    data::DatasetPtr ds = data::open_split(config, split);
    if (r.classes.empty()) r.classes = ds->class_names();
    if (ds->class_names() != r.classes)
      throw Error(fmt::format("split '{}' of {} has other classes than split '{}'", split,
                              root.string(), r.items.empty() ? "" : r.items.front().split));
    splits[split] = ds->size();
    for (size_t i = 0; i < ds->size(); ++i)
      r.items.push_back(
          {split, i, relative_to_root(ds->describe(i), root), ds->file(i), ds->label(i)});
    dataset_of_split[split] = datasets.size();
    datasets.push_back(ds);
  }
  if (r.items.empty()) throw Error(format + " at " + root.string() + " has no images");
  r.dataset = {{"format", format},
               {"root", root.string()},
               {"splits", splits},
               {"classes", r.classes.size()},
               {"images", r.items.size()}};

  // Per image: bytes and pixels.
  auto phase = std::chrono::steady_clock::now();
  r.facts.assign(r.items.size(), ImageFacts{});
  parallel_for(r.items.size(), options.threads, "inspect", options.progress, [&](size_t i) {
    const Item& item = r.items[i];
    ImageFacts& facts = r.facts[i];
    if (item.file) {
      facts = inspect_file(*item.file, options.thresholds.max_pixels);
      return;
    }
    try {
      inspect_pixels(datasets[dataset_of_split.at(item.split)]->load_rgb(item.index), facts);
    } catch (const Error& e) {
      facts.error = e.what();
    }
  });
  r.timings["inspect_s"] = seconds_since(phase);

  // The dataset's usual colour mode and depth, so only the odd ones out are flagged.
  std::map<std::string, size_t> modes;
  std::map<int, size_t> depths;
  for (const auto& f : r.facts)
    if (!f.mode.empty()) ++modes[f.mode], ++depths[f.bit_depth];
  const auto most = [](const auto& counts, auto fallback) {
    auto best = fallback;
    size_t n = 0;
    for (const auto& [key, count] : counts)
      if (count > n) best = key, n = count;
    return best;
  };
  const std::string majority_mode = most(modes, std::string());
  const int majority_depth = most(depths, 8);
  for (size_t i = 0; i < r.items.size(); ++i)
    for (auto& finding :
         image_findings(r.facts[i], options.thresholds, majority_mode, majority_depth))
      r.flags.push_back({i, finding.reason, finding.detail, finding.score});
  r.dataset["modes"] = modes;

  // Duplicates and leaks.
  phase = std::chrono::steady_clock::now();
  std::vector<bool> dropped(r.items.size(), false);
  find_exact_duplicates(r, dropped);
  r.timings["exact_duplicates_s"] = seconds_since(phase);
  phase = std::chrono::steady_clock::now();
  find_phash_duplicates(r, options, dropped);
  r.timings["phash_duplicates_s"] = seconds_since(phase);

  // Signals that need a model: probabilities (label issues, accuracy by class and group),
  // embeddings (near-duplicates robust to crops and flips, outliers).
  phase = std::chrono::steady_clock::now();
  const ModelSignals signals = model_signals(config, options, r, datasets, dataset_of_split);
  r.timings["model_s"] = seconds_since(phase);
  apply_model_signals(r, options, signals, dropped);

  r.bias = bias_figures(r, options.effective_number_beta);
  if (signals.has_probabilities()) r.bias["accuracy_by_class"] = class_accuracy(r, signals);
  if (!options.groups.empty()) r.groups = group_figures(r, options.groups, signals);
  r.timings["total_s"] = seconds_since(start);
  r.datasets = std::move(datasets);
  r.dataset_of_split = std::move(dataset_of_split);
  return r;
}

}  // namespace finch::doctor
