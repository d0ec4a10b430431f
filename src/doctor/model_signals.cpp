// What a model says about the data: out-of-sample probabilities (from a given model, or from K
// fold models the doctor trains itself) and embeddings; and what the doctor makes of them.
#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numeric>
#include <set>
#include <unordered_map>

#include "doctor_internal.h"
#include "finch/core/atomic_file.h"
#include "finch/core/csv.h"
#include "finch/core/error.h"
#include "finch/core/rng.h"
#include "finch/eval/session.h"
#include "finch/gallery/gallery.h"
#include "finch/train/trainer.h"

namespace finch::doctor {

namespace fs = std::filesystem;
using namespace detail;

namespace {

// Item ids of each split are contiguous, in split order.
std::map<std::string, size_t> split_offsets(const DoctorReport& r) {
  std::map<std::string, size_t> offset;
  for (size_t i = 0; i < r.items.size(); ++i) offset.emplace(r.items[i].split, i);
  return offset;
}

// Column c of the model's output is dataset class column[c]; throws on any difference.
std::vector<int64_t> class_columns(const std::vector<std::string>& model_classes,
                                   const std::vector<std::string>& classes,
                                   const std::string& model) {
  std::vector<int64_t> column;
  for (const auto& name : model_classes) {
    auto it = std::find(classes.begin(), classes.end(), name);
    if (it == classes.end())
      throw Error(
          fmt::format("the model {} has the class '{}', which the dataset lacks: the "
                      "doctor needs a model of the dataset's own classes",
                      model, name));
    column.push_back(it - classes.begin());
  }
  for (const auto& name : classes)
    if (std::find(model_classes.begin(), model_classes.end(), name) == model_classes.end())
      throw Error(
          fmt::format("the dataset's class '{}' is not a class of the model {} ({} "
                      "classes): the doctor needs a model of the dataset's own classes",
                      name, model, model_classes.size()));
  return column;
}

// Runs `model` over the given items (all when `only` is empty) and writes their rows.
void fill_from_model(const fs::path& model, const DoctorReport& r,
                     const std::vector<data::DatasetPtr>& datasets,
                     const std::map<std::string, size_t>& dataset_of_split,
                     const std::vector<size_t>& only, const DoctorOptions& options,
                     ModelSignals& out, bool probabilities, bool embeddings) {
  eval::InferenceSession session(model);
  const std::vector<int64_t> column = class_columns(session.classes(), r.classes, model.string());
  const auto offset = split_offsets(r);
  std::map<std::string, std::vector<size_t>> wanted;  // split -> indices in it
  if (only.empty()) {
    for (const auto& item : r.items) wanted[item.split].push_back(item.index);
  } else {
    for (size_t i : only) wanted[r.items[i].split].push_back(r.items[i].index);
  }
  gallery::EmbedOptions embed;
  embed.batch_size = options.batch_size;
  embed.workers = std::max(1, thread_count(options.threads));
  embed.max_pixels = options.thresholds.max_pixels;
  embed.progress = options.progress;
  for (const auto& [split, indices] : wanted) {
    auto subset =
        std::make_shared<data::SubsetDataset>(datasets[dataset_of_split.at(split)], indices);
    const gallery::EmbeddedImages e = gallery::embed_dataset(session, subset, embed);
    if (e.indices.empty()) continue;
    const torch::Tensor p = torch::softmax(e.logits.to(torch::kDouble), 1);
    if (probabilities && !out.probabilities.defined())
      out.probabilities = torch::zeros(
          {static_cast<int64_t>(r.items.size()), static_cast<int64_t>(r.classes.size())},
          torch::kDouble);
    if (embeddings && !out.embeddings.defined())
      out.embeddings = torch::zeros({static_cast<int64_t>(r.items.size()), e.embeddings.size(1)});
    const torch::Tensor columns = torch::tensor(column, torch::kLong);
    for (size_t k = 0; k < e.indices.size(); ++k) {
      const size_t item = offset.at(split) + indices[static_cast<size_t>(e.indices[k])];
      if (probabilities) out.probabilities[item].index_copy_(0, columns, p[k]);
      if (embeddings) out.embeddings[item].copy_(e.embeddings[k]);
      out.has_row[item] = true;
    }
  }
}

// Stratified, seeded folds over the readable items: each class's items shuffled and dealt
// round-robin, so every fold has about 1/K of every class.
std::vector<int> stratified_folds(const DoctorReport& r, int k, uint64_t seed) {
  std::vector<std::vector<size_t>> by_class(r.classes.size());
  for (size_t i = 0; i < r.items.size(); ++i)
    if (r.facts[i].decoded) by_class[r.items[i].label].push_back(i);
  for (size_t c = 0; c < by_class.size(); ++c)
    if (!by_class[c].empty() && by_class[c].size() < static_cast<size_t>(k))
      throw Error(fmt::format(
          "--cv {} needs at least {} readable images of every class; class '{}' has {} (use "
          "fewer folds, or --model with a model that was not trained on these images)",
          k, k, r.classes[c], by_class[c].size()));
  std::vector<int> fold(r.items.size(), -1);
  Rng rng(seed);
  size_t dealt = 0;
  for (auto& members : by_class) {
    for (size_t i = members.size(); i > 1; --i)
      std::swap(members[i - 1], members[rng.below(static_cast<uint64_t>(i))]);
    for (size_t m : members) fold[m] = static_cast<int>(dealt++ % static_cast<size_t>(k));
  }
  return fold;
}

ModelSignals cross_validated(const Config& config, const DoctorOptions& options,
                             const DoctorReport& r, const std::vector<data::DatasetPtr>& datasets,
                             const std::map<std::string, size_t>& dataset_of_split) {
  ModelSignals out;
  out.has_row.assign(r.items.size(), false);
  const int k = options.cv_folds;
  const uint64_t seed = config.get<uint64_t>("seed");
  const std::vector<int> fold = stratified_folds(r, k, seed);
  for (int f = 0; f < k; ++f) {
    const fs::path dir = options.out / "cv" / fmt::format("fold_{}", f);
    fs::create_directories(dir);
    std::vector<size_t> members;
    std::string exclude = "path\n";
    for (size_t i = 0; i < r.items.size(); ++i)
      if (fold[i] == f) {
        members.push_back(i);
        exclude += csv_field(r.items[i].path) + "\n";
      }
    write_file_atomic(dir / "held_out.csv", exclude);
    // The fold model learns from every split except its fold: out-of-sample for the fold.
    Config fold_config = config;
    fold_config.set_string("data.train_split", "all");
    fold_config.set_string("data.exclude", (dir / "held_out.csv").string());
    fold_config.set_string("data.val_split", "");
    const fs::path done = dir / "fold.done";
    if (!fs::exists(done)) {
      const bool resume = fs::exists(dir / "checkpoint" / "state.json");
      fmt::print(stderr, "cv: {} fold {}/{} ({} held-out images) into {}\n",
                 resume ? "resuming" : "training", f + 1, k, members.size(), dir.string());
      const train::TrainSummary summary = train::run_training(fold_config, dir / "run", resume);
      if (summary.interrupted)
        throw Error("interrupted while training fold " + std::to_string(f + 1) +
                    "; run the same command again to resume it");
      write_file_atomic(done, summary.best_model.string() + "\n");
    }
    fill_from_model(dir / "run" / "best.safetensors", r, datasets, dataset_of_split, members,
                    options, out, /*probabilities=*/true, /*embeddings=*/false);
  }
  // Embeddings of different fold models are different spaces: one model embeds everything.
  ModelSignals space;
  space.has_row.assign(r.items.size(), false);
  fill_from_model(options.out / "cv" / "fold_0" / "run" / "best.safetensors", r, datasets,
                  dataset_of_split, {}, options, space, false, true);
  out.embeddings = space.embeddings;
  out.source = fmt::format("{}-fold cross-validation (stratified, seed {}) with {}", k, seed,
                           options.cv_recipe.string());
  return out;
}

double pearson(const std::vector<double>& x, const std::vector<double>& y) {
  const size_t n = x.size();
  if (n < 2) return 0;
  const double mx = std::accumulate(x.begin(), x.end(), 0.0) / n;
  const double my = std::accumulate(y.begin(), y.end(), 0.0) / n;
  double sxy = 0, sxx = 0, syy = 0;
  for (size_t i = 0; i < n; ++i) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) * (x[i] - mx);
    syy += (y[i] - my) * (y[i] - my);
  }
  return sxx > 0 && syy > 0 ? sxy / std::sqrt(sxx * syy) : 0.0;
}

}  // namespace

ModelSignals model_signals(const Config& config, const DoctorOptions& options,
                           const DoctorReport& r, const std::vector<data::DatasetPtr>& datasets,
                           const std::map<std::string, size_t>& dataset_of_split) {
  if (!options.model.empty() && options.cv_folds > 0)
    throw Error(
        "--model and --cv are alternatives: probabilities come from a given model or "
        "from fold models the doctor trains, not both");
  if (options.cv_folds == 1) throw Error("--cv needs at least 2 folds (5 is usual)");
  if (options.cv_folds > 0) return cross_validated(config, options, r, datasets, dataset_of_split);
  ModelSignals out;
  if (options.model.empty()) return out;
  out.has_row.assign(r.items.size(), false);
  fill_from_model(options.model, r, datasets, dataset_of_split, {}, options, out, true, true);
  out.source = "model " + options.model.string() +
               " (its probabilities are out-of-sample only for images it was not trained on)";
  return out;
}

void apply_model_signals(DoctorReport& r, const DoctorOptions& options, const ModelSignals& signals,
                         std::vector<bool>& dropped) {
  r.probability_source = signals.source;
  std::vector<size_t> rows;
  for (size_t i = 0; i < signals.has_row.size(); ++i)
    if (signals.has_row[i]) rows.push_back(i);
  if (rows.empty()) return;
  const torch::Tensor index = torch::tensor(std::vector<int64_t>(rows.begin(), rows.end()));

  if (signals.embeddings.defined()) {
    // The k nearest of every image (itself excluded): near-duplicates, and the outlier score
    // 1 - mean similarity to them. Queries in blocks: the similarity matrix of 70,000
    // images would be 20 GB.
    const torch::Tensor e = signals.embeddings.index_select(0, index);
    const int64_t k = std::min<int64_t>(std::max(options.outlier_k, 2), e.size(0) - 1);
    if (k >= 1) {
      std::vector<std::vector<gallery::Neighbour>> neighbours;
      neighbours.reserve(rows.size());
      for (int64_t begin = 0; begin < e.size(0); begin += 1024)
        for (auto& hits : gallery::exact_search(
                 e.narrow(0, begin, std::min<int64_t>(1024, e.size(0) - begin)), e, k + 1))
          neighbours.push_back(std::move(hits));
      std::set<std::pair<size_t, size_t>> known;
      for (const auto& d : r.duplicates) known.emplace(std::min(d.a, d.b), std::max(d.a, d.b));
      std::vector<std::pair<double, size_t>> isolation;
      std::vector<std::tuple<double, size_t, size_t>> pairs;
      const int64_t outlier_k = std::min<int64_t>(options.outlier_k, k);
      for (size_t q = 0; q < rows.size(); ++q) {
        std::vector<gallery::Neighbour> others;
        for (const auto& n : neighbours[q])
          if (static_cast<size_t>(n.item) != q) others.push_back(n);
        double sum = 0;
        int64_t taken = 0;
        for (const auto& n : others)
          if (taken < outlier_k) sum += n.score, ++taken;
        isolation.emplace_back(taken ? 1.0 - sum / taken : 0.0, rows[q]);
        // A duplicate is the nearest image by a wide margin (Lowe's ratio test): a classifier's
        // embedding puts many different images of a class almost on top of each other, so a
        // similarity threshold alone flags thousands of them.
        if (others.size() < 2) continue;
        const double d1 = 1.0 - others[0].score, d2 = 1.0 - others[1].score;
        const size_t a = rows[q], b = rows[static_cast<size_t>(others[0].item)];
        if (others[0].score >= options.embedding_similarity && d1 <= options.embedding_ratio * d2 &&
            !known.count({std::min(a, b), std::max(a, b)}))
          pairs.emplace_back(d1, std::min(a, b), std::max(a, b));
      }
      std::sort(pairs.begin(), pairs.end());
      pairs.erase(std::unique(pairs.begin(), pairs.end()), pairs.end());
      for (const auto& [distance, a, b] : pairs)
        if (!known.count({a, b})) {
          add_pair(r, a, b, "embedding", distance, dropped);
          known.emplace(a, b);
        }
      std::sort(isolation.begin(), isolation.end(), std::greater<>());
      const auto flagged = static_cast<size_t>(
          std::ceil(options.outlier_share * static_cast<double>(isolation.size())));
      for (size_t o = 0; o < flagged && o < isolation.size(); ++o)
        r.flags.push_back({isolation[o].second, "outlier",
                           fmt::format("mean cosine similarity {:.4f} to its {} nearest images "
                                       "(rank {} of {})",
                                       1 - isolation[o].first, outlier_k, o + 1, isolation.size()),
                           isolation[o].first});
    }
  }

  if (signals.has_probabilities()) {
    const torch::Tensor p = signals.probabilities.index_select(0, index).contiguous();
    auto pa = p.accessor<double, 2>();
    std::vector<std::vector<double>> probabilities(rows.size());
    std::vector<int64_t> labels;
    for (size_t q = 0; q < rows.size(); ++q) {
      probabilities[q].assign(&pa[q][0], &pa[q][0] + p.size(1));
      labels.push_back(r.items[rows[q]].label);
    }
    r.label_items = rows;
    r.label_issues = confident_learning(probabilities, labels, options.label_method);
    for (const auto& issue : r.label_issues->issues) {
      const size_t item = rows[issue.index];
      r.flags.push_back(
          {item, "label_issue",
           fmt::format("labelled {}, probably {} (p = {:.3f} for the label, {:.3f} for {})",
                       r.classes[issue.given], r.classes[issue.suggested], issue.self_confidence,
                       issue.self_confidence + issue.margin, r.classes[issue.suggested]),
           issue.self_confidence});
    }
  }
}

nlohmann::json class_accuracy(const DoctorReport& r, const ModelSignals& signals) {
  const size_t c = r.classes.size();
  std::vector<int64_t> right(c, 0), seen(c, 0), train(c, 0);
  for (size_t i = 0; i < r.items.size(); ++i) {
    if (r.items[i].split == "train") ++train[r.items[i].label];
    if (!signals.has_row[i]) continue;
    ++seen[r.items[i].label];
    right[r.items[i].label] +=
        signals.probabilities[i].argmax().item<int64_t>() == r.items[i].label;
  }
  nlohmann::json per = nlohmann::json::array();
  std::vector<double> log_size, accuracy;
  for (size_t k = 0; k < c; ++k) {
    if (seen[k] == 0) continue;
    const double acc = double(right[k]) / seen[k];
    per.push_back({{"class", r.classes[k]},
                   {"train_images", train[k]},
                   {"images", seen[k]},
                   {"accuracy", acc}});
    if (train[k] > 0) log_size.push_back(std::log(double(train[k]))), accuracy.push_back(acc);
  }
  return {{"per_class", per},
          {"source", signals.source},
          {"correlation_log_train_size_accuracy", pearson(log_size, accuracy)}};
}

nlohmann::json group_figures(const DoctorReport& r, const fs::path& groups,
                             const ModelSignals& signals) {
  std::ifstream in(groups);
  if (!in) throw Error("--groups: cannot read " + groups.string());
  std::unordered_map<std::string, size_t> by_path;
  for (size_t i = 0; i < r.items.size(); ++i) {
    by_path.emplace(r.items[i].path, i);
    if (r.items[i].file) by_path.emplace(r.items[i].file->string(), i);
  }
  std::vector<std::string> columns;
  std::vector<std::vector<std::pair<size_t, std::string>>> values;  // column -> (item, group)
  std::vector<std::string> unknown;
  std::string line;
  size_t unknown_count = 0;
  for (size_t number = 1; std::getline(in, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    const auto fields = split_csv_line(line, groups.string(), number);
    if (columns.empty()) {
      if (fields.size() < 2 || fields[0] != "path")
        throw line_error(groups.string(), number,
                         "expected the header `path,GROUP_1[,GROUP_2...]` (e.g. "
                         "path,camera,site)",
                         line);
      columns.assign(fields.begin() + 1, fields.end());
      values.resize(columns.size());
      continue;
    }
    if (fields.size() != columns.size() + 1)
      throw line_error(groups.string(), number,
                       fmt::format("expected {} fields, got {}", columns.size() + 1, fields.size()),
                       line);
    auto it = by_path.find(fields[0]);
    if (it == by_path.end()) {
      if (unknown.size() < 5) unknown.push_back(fmt::format("{} (line {})", fields[0], number));
      ++unknown_count;
      continue;
    }
    for (size_t c = 0; c < columns.size(); ++c) values[c].emplace_back(it->second, fields[c + 1]);
  }
  if (columns.empty()) throw Error("--groups: " + groups.string() + " is empty");
  if (unknown_count > 0) {
    std::string list;
    for (const auto& u : unknown) list += "\n  " + u;
    throw Error(fmt::format(
        "--groups: {} names {} images that are not in the dataset; the first:{}\n(paths as "
        "the doctor lists them: relative to data.root, e.g. {})",
        groups.string(), unknown_count, list, r.items.front().path));
  }
  nlohmann::json out = nlohmann::json::object();
  for (size_t c = 0; c < columns.size(); ++c) {
    struct Tally {
      int64_t images = 0, scored = 0, right = 0;
      double confidence = 0;
      std::vector<double> bin_confidence = std::vector<double>(15, 0.0);
      std::vector<int64_t> bin_right = std::vector<int64_t>(15, 0),
                           bin_count = std::vector<int64_t>(15, 0);
    };
    std::map<std::string, Tally> tally;
    for (const auto& [item, group] : values[c]) {
      Tally& t = tally[group];
      ++t.images;
      if (!signals.has_probabilities() || !signals.has_row[item]) continue;
      const torch::Tensor p = signals.probabilities[item];
      const int64_t predicted = p.argmax().item<int64_t>();
      const double confidence = p[predicted].item<double>();
      const bool right = predicted == r.items[item].label;
      ++t.scored;
      t.right += right;
      t.confidence += confidence;
      const int bin = std::min(14, static_cast<int>(confidence * 15));
      t.bin_confidence[bin] += confidence;
      t.bin_right[bin] += right;
      ++t.bin_count[bin];
    }
    nlohmann::json rows = nlohmann::json::array();
    double best = -1, worst = 2;
    std::string best_group, worst_group;
    for (const auto& [group, t] : tally) {
      nlohmann::json row{{"group", group}, {"images", t.images}};
      if (t.scored > 0) {
        double ece = 0;
        for (int b = 0; b < 15; ++b)
          if (t.bin_count[b] > 0)
            ece += double(t.bin_count[b]) / t.scored *
                   std::abs(double(t.bin_right[b]) / t.bin_count[b] -
                            t.bin_confidence[b] / t.bin_count[b]);
        const double acc = double(t.right) / t.scored;
        row["accuracy"] = acc;
        row["mean_confidence"] = t.confidence / t.scored;
        row["ece"] = ece;
        if (acc > best) best = acc, best_group = group;
        if (acc < worst) worst = acc, worst_group = group;
      }
      rows.push_back(row);
    }
    nlohmann::json entry{{"groups", rows}};
    if (best >= 0)
      entry["largest_accuracy_gap"] = {
          {"gap", best - worst}, {"best", best_group}, {"worst", worst_group}};
    out[columns[c]] = entry;
  }
  return out;
}

}  // namespace finch::doctor
