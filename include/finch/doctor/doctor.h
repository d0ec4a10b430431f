#pragma once
// `finch data doctor`: one pass over every split of a dataset that finds what would ruin a
// fine-grained model (unreadable and odd files, poor images, duplicates and train/test
// leaks, mislabelled images, outliers, class imbalance and group gaps), writes a report a
// person can act on and a cleaned manifest, and never changes the dataset folder.
#include <cstdint>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "finch/core/config.h"
#include "finch/core/progress.h"
#include "finch/data/dataset.h"
#include "finch/doctor/checks.h"
#include "finch/doctor/label_issues.h"

namespace finch::doctor {

struct DoctorOptions {
  std::filesystem::path out;        // report folder (created; never the dataset folder)
  std::filesystem::path model;      // optional: probabilities and embeddings from this model
  int cv_folds = 0;                 // > 0: out-of-sample probabilities from K fold models
  std::filesystem::path cv_recipe;  // the recipe the fold models are trained with
  std::filesystem::path groups;     // optional CSV `path,group...` for per-group figures
  Thresholds thresholds;
  int phash_distance = 4;              // Hamming distance of near-duplicates (of 64 bits)
  double pixel_difference = 4;         // and their 16 x 16 thumbnails' mean grey difference
  double embedding_similarity = 0.99;  // an image's nearest image is its near-duplicate at this
  double embedding_ratio = 0.2;        // cosine and this share of the 2nd nearest's distance
  int outlier_k = 10;                  // k of the k-NN outlier score
  double outlier_share = 0.005;        // the most isolated share of images flagged as outliers
  LabelIssueMethod label_method = LabelIssueMethod::kPruneByNoiseRate;
  /// Reasons whose images clean.csv leaves out (the others are listed in flagged.csv as
  /// `kept`): unusable files, duplicates, leaks, conflicting and wrong labels, flat images.
  std::vector<std::string> drop = {
      "zero_byte",      "truncated", "undecodable",        "too_large",   "exact_duplicate",
      "near_duplicate", "leak",      "conflicting_labels", "label_issue", "near_constant"};
  double effective_number_beta = 0.999;  // Cui et al. 2019's beta for the bias figures
  int threads = 0;                       // 0: every core
  int64_t batch_size = 128;
  int thumbnails = 48;  // per section of the HTML page (0: all)
  ProgressStyle progress = ProgressStyle::kAuto;
};

/// One image of one split.
struct Item {
  std::string split;
  size_t index = 0;  // in its split
  std::string path;  // describe(), relative to data.root when under it
  std::optional<std::filesystem::path> file;
  int64_t label = 0;
};

/// One reason to look at one image.
struct Flag {
  size_t item = 0;
  std::string reason, detail;
  double score = 0;
  size_t other = SIZE_MAX;  // the other image of a duplicate pair
};

/// Two images that are the same picture (exact: same decoded pixels; phash: perceptual hashes
/// within the Hamming distance, mirror images included; embedding: cosine similarity).
struct DuplicatePair {
  size_t a = 0, b = 0;  // a is the one kept
  std::string kind;
  double distance = 0;  // Hamming bits, or 1 - cosine
  bool across_splits = false, conflicting_labels = false;
};

struct DoctorReport {
  nlohmann::json dataset;  // format, root, splits and their sizes
  std::vector<std::string> classes;
  std::vector<Item> items;
  std::vector<ImageFacts> facts;  // per item
  std::vector<Flag> flags;
  std::vector<DuplicatePair> duplicates;
  size_t phash_pairs_dropped = 0;  // pairs beyond the report's cap (counted, not listed)
  std::string probability_source;  // "" without a model
  std::optional<ConfidentLearning> label_issues;
  std::vector<size_t> label_items;  // item of each probability row
  nlohmann::json bias, groups, timings, thresholds;
  /// The splits' datasets (for thumbnails of images without a file of their own).
  std::vector<data::DatasetPtr> datasets;
  std::map<std::string, size_t> dataset_of_split;
};

/// Every reason the doctor flags an image for, with a title, in the order a person should look
/// at them (the report's order).
const std::vector<std::pair<std::string, std::string>>& reason_titles();

/// Options from the config's `doctor` section (thresholds and search settings); the caller
/// sets out, model, cv, groups and progress.
DoctorOptions doctor_options(const Config& config);

/// Runs every check on every split of the dataset `config` names (data.format, data.root and
/// the format's options). Throws finch::Error for bad options (a groups file naming unknown
/// images, a model whose classes differ, --cv with fewer images per class than folds).
DoctorReport run_doctor(const Config& config, const DoctorOptions& options);

/// Writes doctor.json, flagged.csv, clean.csv (csv-format manifest of the kept images of
/// formats with files) and doctor.html into options.out.
void write_doctor_outputs(const DoctorReport& report, const DoctorOptions& options);

nlohmann::json to_json(const DoctorReport& report, const DoctorOptions& options);
/// A short human-readable summary (counts per reason, the top suspects).
std::string format_summary(const DoctorReport& report, const DoctorOptions& options);

}  // namespace finch::doctor
