// `finch eval --open-set`: how well the model tells images of its own classes from images of
// classes it never saw, for each open-set score, and (with --calibrate-tpr) the rejection
// thresholds that `finch predict --reject` uses, chosen on validation data.
#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <map>

#include "eval_args.h"
#include "finch/core/atomic_file.h"
#include "finch/core/csv.h"
#include "finch/core/error.h"
#include "finch/data/class_list.h"
#include "finch/data/from_config.h"
#include "finch/eval/open_set.h"
#include "finch/explain/charts.h"
#include "finch/io/image.h"
#include "finch/models/model_file.h"

namespace finch::cli {

namespace {

using eval::OpenSetScore;
using ScoreTable = std::map<OpenSetScore, std::vector<double>>;

gallery::EmbeddedImages embed(eval::InferenceSession& session, const data::DatasetPtr& dataset,
                              const EvalArgs& args) {
  auto images = gallery::embed_dataset(session, dataset, eval_embed_options(args));
  if (!images.logits.defined() || images.logits.size(0) != images.embeddings.size(0))
    throw Error("this model returns no logits: open-set scores need a classifier head");
  return images;
}

// Every score of every image; knn only with a reference.
ScoreTable score_images(const gallery::EmbeddedImages& images, const torch::Tensor& reference,
                        int64_t k) {
  auto to_vector = [](const torch::Tensor& t) {
    const torch::Tensor c = t.to(torch::kDouble).contiguous();
    return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
  };
  ScoreTable table;
  for (OpenSetScore s : eval::logit_scores())
    table[s] = to_vector(eval::logit_score(images.logits, s));
  if (reference.defined())
    table[OpenSetScore::kKnn] = to_vector(gallery::kth_similarity(images.embeddings, reference, k));
  return table;
}

// The model's training data for the k-NN reference and the validation part for calibration,
// carved as the trainer carves it (the format's val split, else data.val_fraction of train).
struct TrainingSide {
  data::TrainValData data;
  torch::Tensor reference;  // [M, D] unit rows, or undefined without a k-NN score
  std::string reference_source;
};

TrainingSide training_side(const EvalArgs& args, eval::InferenceSession& session,
                           const Config& config) {
  TrainingSide side;
  Config train_config = config;
  train_config.set("data.classes", nlohmann::json(session.classes()).dump());
  if (args.calibrate_tpr > 0 || (args.score_knn > 0 && args.gallery.empty()))
    side.data = data::open_train_val(train_config);
  if (args.score_knn == 0) return side;
  if (!args.gallery.empty()) {
    const gallery::Gallery g = gallery::Gallery::load(args.gallery);
    g.check_model(session);
    if (g.size() == 0) throw Error(args.gallery + " is empty: add images with `finch gallery add`");
    side.reference = g.embeddings();
    side.reference_source = "gallery " + args.gallery;
  } else {
    side.reference = embed(session, side.data.train, args).embeddings;
    side.reference_source =
        fmt::format("split '{}' of the model's classes, without the validation part ({})",
                    train_config.get<std::string>("data.train_split"), side.data.val_source);
  }
  return side;
}

void write_scores_csv(const std::string& path, const gallery::EmbeddedImages& known,
                      const gallery::EmbeddedImages& unknown, const ScoreTable& known_scores,
                      const ScoreTable& unknown_scores, const std::vector<bool>& correct,
                      const std::vector<std::string>& class_names,
                      const std::vector<std::string>& unknown_class_names) {
  std::string csv = "path,set,class,correct";
  for (const auto& [score, values] : known_scores) csv += "," + eval::to_string(score);
  csv += "\n";
  for (size_t i = 0; i < known.paths.size(); ++i) {
    csv += csv_field(known.paths[i]) + ",known," + csv_field(class_names[known.labels[i]]) + "," +
           (correct[i] ? "1" : "0");
    for (const auto& [score, values] : known_scores) csv += fmt::format(",{:.17g}", values[i]);
    csv += "\n";
  }
  for (size_t i = 0; i < unknown.paths.size(); ++i) {
    csv += csv_field(unknown.paths[i]) + ",unknown," +
           csv_field(unknown_class_names[unknown.labels[i]]) + ",0";
    for (const auto& [score, values] : unknown_scores) csv += fmt::format(",{:.17g}", values[i]);
    csv += "\n";
  }
  write_file_atomic(path, csv);
}

}  // namespace

void run_open_set(const EvalArgs& args, eval::InferenceSession& session) {
  if (args.unknown_classes.empty() == args.unknown_root.empty())
    throw Error("--open-set needs exactly one of --unknown-classes LIST and --unknown-root DIR");
  const Config config = eval_data_config(args, session.info());
  const data::DatasetPtr split = data::open_split(config, args.data.split);
  const auto& names = split->class_names();
  const auto& known_names = session.classes();
  // Dataset class -> model class, by name.
  std::vector<int64_t> to_model(names.size(), -1);
  for (size_t m = 0; m < known_names.size(); ++m) {
    auto it = std::find(names.begin(), names.end(), known_names[m]);
    if (it == names.end())
      throw Error(fmt::format(
          "the model's class '{}' is not a class of {} split '{}': open-set evaluation needs "
          "test images of the model's classes (the dataset the model was trained on)",
          known_names[m], args.data.format, args.data.split));
    to_model[it - names.begin()] = static_cast<int64_t>(m);
  }
  std::vector<size_t> known_idx, unknown_idx;
  data::DatasetPtr unknown_set;
  std::vector<std::string> unknown_class_names, unknown_list;  // label names; the unknowns
  if (!args.unknown_classes.empty()) {
    std::vector<bool> is_unknown(names.size(), false);
    for (int64_t c : data::parse_class_list(args.unknown_classes, names, "--unknown-classes")) {
      if (to_model[c] >= 0)
        throw Error("--unknown-classes: '" + names[c] +
                    "' is one of the model's classes; the unknowns must be classes it never saw");
      is_unknown[c] = true;
      unknown_list.push_back(names[c]);
    }
    for (size_t i = 0; i < split->size(); ++i) {
      const int64_t label = split->label(i);
      if (to_model[label] >= 0) known_idx.push_back(i);
      if (is_unknown[label]) unknown_idx.push_back(i);
    }
    unknown_set = std::make_shared<data::SubsetDataset>(split, unknown_idx);
    unknown_class_names = names;
  } else {
    Config unknown_config = config;
    unknown_config.set("data.root", args.unknown_root);
    unknown_set = data::open_split(unknown_config, args.data.split);
    for (const auto& name : unknown_set->class_names())
      if (std::find(known_names.begin(), known_names.end(), name) != known_names.end())
        throw Error("--unknown-root " + args.unknown_root + " has the model's class '" + name +
                    "'; the unknowns must be classes the model never saw");
    for (size_t i = 0; i < split->size(); ++i)
      if (to_model[split->label(i)] >= 0) known_idx.push_back(i);
    unknown_class_names = unknown_list = unknown_set->class_names();
  }
  if (unknown_set->size() == 0)
    throw Error(
        fmt::format("there are no images of the unknown classes in split '{}'", args.data.split));
  if (known_idx.empty())
    throw Error(fmt::format("split '{}' has no images of the model's classes", args.data.split));
  const auto known_set = std::make_shared<data::SubsetDataset>(split, known_idx);

  const TrainingSide train = training_side(args, session, config);
  const auto known = embed(session, known_set, args);
  const auto unknown = embed(session, unknown_set, args);
  const ScoreTable known_scores = score_images(known, train.reference, args.score_knn);
  const ScoreTable unknown_scores = score_images(unknown, train.reference, args.score_knn);
  const torch::Tensor predicted = known.logits.argmax(1);
  std::vector<bool> correct;
  for (size_t i = 0; i < known.labels.size(); ++i)
    correct.push_back(predicted[static_cast<int64_t>(i)].item<int64_t>() ==
                      to_model[known.labels[i]]);

  nlohmann::json out{
      {"model", args.model},
      {"dataset",
       {{"format", args.data.format}, {"root", args.data.root}, {"split", args.data.split}}},
      {"known", {{"classes", known_names}, {"images", known.labels.size()}}},
      {"unknown",
       {{"source", args.unknown_root.empty() ? "classes" : args.unknown_root},
        {"classes", unknown_list},
        {"images", unknown.labels.size()}}},
      {"skipped", known.errors.size() + unknown.errors.size()},
      {"scores", nlohmann::json::object()}};
  std::string text = fmt::format(
      "{} on {} split '{}': {} known classes ({} images), {} unknown classes ({} images)\n",
      args.model, args.data.format, args.data.split, known_names.size(), known.labels.size(),
      unknown_list.size(), unknown.labels.size());
  std::vector<explain::LineSeries> curves;
  for (const auto& [score, values] : known_scores) {
    eval::OpenSetScores s{values, unknown_scores.at(score), correct};
    const auto metrics = eval::open_set_metrics(s, args.tpr);
    out["scores"][eval::to_string(score)] = eval::to_json(metrics);
    out["closed_accuracy"] = metrics.closed_accuracy;
    if (text.find("closed-set") == std::string::npos)
      text +=
          fmt::format("closed-set top-1 on the known classes: {:.2f}%\n{:<12} {:>7} {:>12} {:>7}\n",
                      100 * metrics.closed_accuracy, "score", "AUROC",
                      fmt::format("FPR@{:.0f}%TPR", 100 * args.tpr), "OSCR");
    const std::string label = score == OpenSetScore::kKnn
                                  ? fmt::format("knn (k={})", args.score_knn)
                                  : eval::to_string(score);
    text += fmt::format("{:<12} {:6.2f}% {:11.2f}% {:6.2f}%\n", label, 100 * metrics.auroc,
                        100 * metrics.fpr_at_tpr, 100 * metrics.oscr);
    auto& curve = curves.emplace_back();
    curve.name = label;
    for (const auto& p : eval::rejection_curve(s))
      curve.points.emplace_back(p.rejected, p.accuracy);
  }
  if (train.reference.defined()) {
    out["knn"] = {{"k", args.score_knn}, {"reference", train.reference_source}};
    text += fmt::format("knn: cosine similarity to the {}-th nearest of {} images of {}\n",
                        args.score_knn, train.reference.size(0), train.reference_source);
  }

  if (args.calibrate_tpr > 0) {
    if (!train.data.val)
      throw Error(
          "--calibrate-tpr needs validation data of the model's classes: this format "
          "has no val split and data.val_fraction is 0 (set --option val_fraction=0.1)");
    const auto val = embed(session, train.data.val, args);
    const ScoreTable val_scores = score_images(val, train.reference, args.score_knn);
    nlohmann::json thresholds = nlohmann::json::object(), at_test = nlohmann::json::object();
    text += fmt::format("thresholds for {:.0f}% TPR on {} ({} images):\n", 100 * args.calibrate_tpr,
                        train.data.val_source, val.labels.size());
    for (const auto& [score, values] : val_scores) {
      const double t = eval::threshold_for_tpr(values, args.calibrate_tpr);
      const auto& k = known_scores.at(score);
      const auto& u = unknown_scores.at(score);
      const double tpr =
          double(std::count_if(k.begin(), k.end(), [&](double v) { return v >= t; })) / k.size();
      const double fpr =
          double(std::count_if(u.begin(), u.end(), [&](double v) { return v >= t; })) / u.size();
      thresholds[eval::to_string(score)] = t;
      at_test[eval::to_string(score)] = {{"threshold", t}, {"tpr", tpr}, {"fpr", fpr}};
      text += fmt::format("  {:<9} {:12.6g}  on split '{}': TPR {:.2f}%, FPR {:.2f}%\n",
                          eval::to_string(score), t, args.data.split, 100 * tpr, 100 * fpr);
    }
    const std::string target = args.calibrated_out.empty() ? args.model : args.calibrated_out;
    models::LoadedModel file = models::load_model_file(args.model);
    file.info.open_set = {{"tpr", args.calibrate_tpr},
                          {"calibrated_on", train.data.val_source},
                          {"default", "maxlogit"},
                          {"thresholds", thresholds}};
    if (train.reference.defined())
      file.info.open_set["knn"] = {{"k", args.score_knn}, {"reference", train.reference_source}};
    models::save_model_file(target, file.model, file.info);
    out["calibration"] = file.info.open_set;
    out["calibration"]["at_split"] = at_test;
    out["calibration"]["written_to"] = target;
    text += fmt::format(
        "written to {} (its SHA-256 changed: rebuild galleries made with the "
        "old file)\n",
        target);
  }
  if (!args.export_scores.empty())
    write_scores_csv(args.export_scores, known, unknown, known_scores, unknown_scores, correct,
                     names, unknown_class_names);
  if (!args.rejection_plot.empty())
    io::write_image_rgb(args.rejection_plot,
                        explain::unit_line_chart(curves,
                                                 "accuracy of accepted images (accepted "
                                                 "unknown = mistake)",
                                                 "share rejected, lowest scores first"));
  if (args.json) {
    std::cout << out.dump() << std::endl;
  } else {
    std::cout << text;
    const size_t skipped = known.errors.size() + unknown.errors.size();
    if (skipped > 0) fmt::print("skipped {} unreadable images\n", skipped);
  }
}

void add_open_set_options(CLI::App& cmd, EvalArgs& args) {
  cmd.add_flag("--open-set", args.open_set,
               "Open-set evaluation: the model's classes against --unknown-classes or "
               "--unknown-root; AUROC, FPR at --tpr and OSCR of each score (msp, maxlogit, "
               "energy, knn)");
  cmd.add_option("--unknown-classes", args.unknown_classes,
                 "open-set: classes of the split the model never saw: names, indices, ranges "
                 "begin:end, comma-separated, or @FILE (one per line)");
  cmd.add_option("--unknown-root", args.unknown_root,
                 "open-set: a second dataset root of the same format whose images are all unknown")
      ->check(CLI::ExistingDirectory);
  add_count_option(cmd, "--score-knn", args.score_knn,
                   "open-set: k of the k-NN score against the model's training images (or "
                   "--gallery); 0 = no k-NN score",
                   0, 100000);
  cmd.add_option("--tpr", args.tpr, "open-set: the true-positive rate of the FPR figure")
      ->check(CLI::Range(0.01, 1.0))
      ->capture_default_str();
  cmd.add_option("--calibrate-tpr", args.calibrate_tpr,
                 "open-set: choose each score's rejection threshold keeping this share of the "
                 "validation images of the model's classes, store them in the model file "
                 "(for `predict --reject`)")
      ->check(CLI::Range(0.01, 1.0));
  cmd.add_option("--calibrated-out", args.calibrated_out,
                 "open-set: write the calibrated model here instead of over --model");
  cmd.add_option("--export-scores", args.export_scores,
                 "open-set: write every image's scores as CSV (path,set,class,correct,<score>...)");
  cmd.add_option("--rejection-plot", args.rejection_plot,
                 "open-set: write accuracy against rejected share for each score (PNG)");
}

}  // namespace finch::cli
