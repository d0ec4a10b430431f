#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <iostream>

#include "commands.h"
#include "eval_args.h"
#include "finch/core/atomic_file.h"
#include "finch/core/config.h"
#include "finch/core/error.h"
#include "finch/core/progress.h"
#include "finch/core/threads.h"
#include "finch/data/formats.h"
#include "finch/data/from_config.h"
#include "finch/data/hierarchy.h"
#include "finch/data/loader.h"
#include "finch/eval/evaluate.h"
#include "finch/eval/hierarchy.h"
#include "finch/eval/retrieval.h"
#include "finch/eval/session.h"
#include "finch/explain/charts.h"
#include "finch/explain/tsne.h"
#include "finch/gallery/gallery.h"
#include "finch/io/image.h"
#include "finch/models/inference.h"
#include "finch/models/model_file.h"
#include "finch/train/distributed.h"
#include "finch/train/trainer.h"

namespace finch::cli {

Config eval_data_config(const EvalArgs& args, const models::ModelInfo& model) {
  Config config = dataset_config(args.data);
  const nlohmann::json& training = model.training;
  const auto user_set = [&](const std::string& key) {
    return std::any_of(args.data.options.begin(), args.data.options.end(),
                       [&](const std::string& o) { return o.rfind(key + "=", 0) == 0; });
  };
  if (training.contains("seed")) config.set("seed", training.at("seed").dump());
  if (training.contains("train_split") && !user_set("train_split"))
    config.set_string("data.train_split", training.at("train_split").get<std::string>());
  if (training.contains("val_fraction") && !user_set("val_fraction"))
    config.set("data.val_fraction", training.at("val_fraction").dump());
  if (args.max_pixels > 0) config.set("data.max_pixels", std::to_string(args.max_pixels));
  return config;
}

gallery::EmbedOptions eval_embed_options(const EvalArgs& args) {
  gallery::EmbedOptions options;
  options.batch_size = args.batch_size;
  options.workers = args.workers;
  options.progress = args.json ? ProgressStyle::kNone : ProgressStyle::kAuto;
  return options;
}

namespace {

// Retrieval and few-shot: the model as an embedding model on classes it may never have seen.
void run_open_world(const EvalArgs& args, eval::InferenceSession& session) {
  Config config = eval_data_config(args, session.info());
  if (!args.class_split.empty()) {
    // Chen et al.'s split over the split's sorted class list.
    const auto all = data::open_split(config, args.data.split)->class_names();
    std::vector<std::string> names;
    for (int64_t c : eval::chen_cub_split(args.class_split, static_cast<int64_t>(all.size())))
      names.push_back(all[c]);
    config.set("data.classes", nlohmann::json(names).dump());
  }
  data::DatasetPtr dataset = data::open_split(config, args.data.split);
  const auto embedded = gallery::embed_dataset(session, dataset, eval_embed_options(args));
  if (!args.save_embeddings.empty())
    gallery::save_embeddings_file(args.save_embeddings, embedded, session.content_hash());
  const torch::Tensor labels = torch::tensor(embedded.labels, torch::kLong);
  nlohmann::json out{{"model", args.model},
                     {"dataset",
                      {{"format", args.data.format},
                       {"root", args.data.root},
                       {"split", args.data.split},
                       {"classes", dataset->num_classes()},
                       {"class_split", args.class_split}}},
                     {"protocol", args.protocol},
                     {"images", embedded.embeddings.size(0)},
                     {"skipped", embedded.errors.size()},
                     {"dtype", session.dtype_name()}};
  std::string text;
  if (args.protocol == "gallery") {
    // Classification by the gallery's classes (matched by name), as `predict --gallery`.
    const gallery::Gallery g = gallery::Gallery::load(args.gallery);
    g.check_model(session);
    const auto& names = dataset->class_names();
    std::vector<int64_t> to_gallery;
    for (const auto& name : names) {
      auto it = std::find(g.classes().begin(), g.classes().end(), name);
      if (it == g.classes().end())
        throw Error("the gallery has no class '" + name +
                    "' of the evaluation data: add its "
                    "images with `finch gallery add`, or select classes with --option "
                    "class_range=[a,b]");
      to_gallery.push_back(it - g.classes().begin());
    }
    gallery::GalleryClassifierOptions options;
    options.knn = args.knn;
    const auto answers = gallery::classify(g, embedded.embeddings, 5, options);
    std::vector<int64_t> correct(names.size(), 0), total(names.size(), 0);
    int64_t top1 = 0, top5 = 0;
    for (size_t i = 0; i < answers.size(); ++i) {
      const int64_t truth = to_gallery[embedded.labels[i]];
      ++total[embedded.labels[i]];
      if (answers[i][0].index == truth) ++top1, ++correct[embedded.labels[i]];
      for (const auto& a : answers[i]) top5 += a.index == truth;
    }
    const double n = std::max<size_t>(1, answers.size());
    double mean_class = 0;
    nlohmann::json per_class = nlohmann::json::object();
    for (size_t c = 0; c < names.size(); ++c) {
      const double acc = total[c] ? double(correct[c]) / total[c] : 0.0;
      per_class[names[c]] = {{"accuracy", acc}, {"support", total[c]}};
      mean_class += acc / names.size();
    }
    out["gallery"] = {{"file", args.gallery},
                      {"items", g.size()},
                      {"classes", g.classes().size()},
                      {"rule", args.knn > 0 ? fmt::format("{}-nn vote", args.knn) : "prototype"},
                      {"top1", top1 / n},
                      {"top5", top5 / n},
                      {"mean_class_accuracy", mean_class},
                      {"per_class", per_class}};
    text = fmt::format(
        "classified by {} ({} items of {} classes, {}):\n  top-1 {:6.2f}%  "
        "top-5 {:6.2f}%  mean per-class {:6.2f}%\n",
        args.gallery, g.size(), g.classes().size(),
        args.knn > 0 ? fmt::format("{}-NN vote", args.knn) : "nearest prototype", 100 * top1 / n,
        100 * top5 / n, 100 * mean_class);
  } else if (args.protocol == "retrieval") {
    const auto metrics = eval::retrieval_metrics(embedded.embeddings, labels);
    out["retrieval"] = eval::to_json(metrics);
    text = eval::format_retrieval(metrics);
  } else {
    eval::FewShotOptions options;
    options.ways = args.ways;
    options.shots = args.shots;
    options.queries = args.queries;
    options.episodes = args.episodes;
    options.seed = args.seed;
    const auto results =
        eval::fewshot_evaluate(embedded.embeddings, labels, options, dataset->class_names());
    out["fewshot"] = eval::to_json(results, options);
    text = fmt::format(
        "{}-way few-shot, {} queries per class, {} episodes (seed {}), nearest "
        "support mean\n",
        options.ways, options.queries, options.episodes, options.seed);
    for (const auto& r : results)
      text +=
          fmt::format("  {}-shot  {:6.2f}% +- {:.2f}%\n", r.shots, 100 * r.accuracy, 100 * r.ci95);
  }
  if (args.json) {
    std::cout << out.dump() << std::endl;
  } else {
    fmt::print("{} on {} split '{}' ({}), {} classes, {} images\n{}", args.model, args.data.format,
               args.data.split, args.data.root, dataset->num_classes(), embedded.embeddings.size(0),
               text);
    if (!embedded.errors.empty())
      fmt::print("skipped {} unreadable images, e.g. {}\n", embedded.errors.size(),
                 embedded.errors.front().second);
  }
}

void run(const EvalArgs& args) {
  torch::set_num_threads(
      choose_threads(args.threads, train::DistEnv::from_environment().local_world_size));
  eval::InferenceSession session(args.model, eval::session_options_for_dtype(args.dtype));
  if (!args.json) report_dtype(session);
  if (args.protocol == "gallery" && args.gallery.empty())
    throw Error("--protocol gallery needs --gallery G");
  if (args.open_set) {
    if (args.protocol != "classification")
      throw Error(
          "--open-set evaluates the model's classifier: leave --protocol at classification");
    return run_open_set(args, session);
  }
  if (args.protocol == "zeroshot") return run_zeroshot(args, session);
  if (args.protocol != "classification") return run_open_world(args, session);
  if (!args.class_split.empty())
    throw Error("--class-split applies to --protocol retrieval or fewshot");
  // Under torchrun each rank evaluates its shard; rank 0 prints and writes the merged metrics.
  const train::DistEnv dist = train::DistEnv::from_environment();
  if (dist.distributed() &&
      (args.confused_examples > 0 || !args.save_embeddings.empty() || !args.tsne.empty()))
    throw Error(
        "under torchrun finch eval computes the metrics only; run --confused-examples, "
        "--save-embeddings and --tsne on one process");
  const std::shared_ptr<train::ProcessGroup> group = join_inference_ranks(dist);
  eval::SplitEvalOptions options;
  options.shard_rank = dist.rank;
  options.shard_count = dist.world_size;
  options.combine = train::merge_metrics_over_ranks(group.get());
  options.split = args.data.split;
  options.batch_size = args.batch_size;
  options.workers = args.workers;
  options.tta = eval::parse_tta(args.tta);
  options.records =
      args.confused_examples > 0 || !args.save_embeddings.empty() || !args.tsne.empty();
  options.progress = args.json ? ProgressStyle::kNone : ProgressStyle::kAuto;
  // open_split honours --option crop_to_box=true (and box_margin) like training does.
  eval::SplitEvaluation result =
      eval::evaluate_split(session, eval_data_config(args, session.info()), options);
  const eval::Metrics& metrics = result.metrics;
  const eval::EvalRecords& records = result.records;
  const data::DatasetPtr& dataset = result.dataset;
  const auto& skipped = result.skipped;
  if (dist.rank != 0) return;  // rank 0 reports for the job
  if (!args.confusion_csv.empty())
    write_file_atomic(args.confusion_csv, eval::confusion_csv(metrics));
  if (!args.reliability.empty())
    io::write_image_rgb(args.reliability, explain::reliability_image(metrics.calibration));
  if (!args.save_embeddings.empty())
    eval::save_embeddings(args.save_embeddings, records, dataset->class_names());
  if (!args.tsne.empty()) {
    if (!records.embeddings.defined()) throw Error("this model returns no embeddings for --tsne");
    auto map = explain::tsne(records.embeddings);
    std::vector<int64_t> labels;
    for (int64_t row : map.chosen) labels.push_back(records.labels[row].item<int64_t>());
    if (std::filesystem::path(args.tsne).extension() == ".svg")
      write_file_atomic(args.tsne,
                        explain::embedding_svg(map.points, labels, dataset->class_names()));
    else
      io::write_image_rgb(args.tsne,
                          explain::embedding_image(map.points, labels, dataset->class_names()));
  }
  // Taxonomy-aware figures: the --hierarchy CSV, else the hierarchy the format ships.
  const std::optional<data::Hierarchy> hierarchy =
      !args.hierarchy.empty()
          ? std::optional(data::read_hierarchy_csv(args.hierarchy, dataset->class_names()))
          : data::dataset_hierarchy(eval_data_config(args, session.info()), dataset->class_names());
  const std::optional<eval::HierarchicalMetrics> by_level =
      hierarchy ? std::optional(eval::hierarchical_metrics(metrics.confusion, *hierarchy))
                : std::nullopt;
  const nlohmann::json examples =
      args.confused_examples > 0
          ? eval::confused_examples(metrics, records, *dataset, args.confused_examples)
          : nlohmann::json();
  if (args.json) {
    nlohmann::json out = eval::to_json(metrics);
    out["model"] = args.model;
    out["dataset"] = {{"format", args.data.format},
                      {"root", args.data.root},
                      {"split", args.data.split},
                      {"source", result.source}};
    out["dtype"] = session.dtype_name();
    out["skipped"] = skipped.size();
    out["tta"] = args.tta;
    if (!examples.is_null()) out["confused_examples"] = examples;
    if (by_level) out["hierarchy"] = eval::to_json(*by_level);
    std::cout << out.dump() << std::endl;
  } else {
    fmt::print("{} on {} {} ({}){}\n{}", args.model, args.data.format, result.source,
               args.data.root, session.dtype_name() == "fp32" ? "" : ", " + session.dtype_name(),
               eval::format_report(metrics));
    if (options.tta != eval::Tta::kNone)
      fmt::print("test-time augmentation: {} ({} views)\n", args.tta, eval::tta_views(options.tta));
    if (by_level) fmt::print("\n{}", eval::format_hierarchical(*by_level));
    fmt::print("\n{}", eval::format_per_class_worst_first(metrics));
    if (!examples.is_null()) {
      fmt::print("\nexamples of the most confused pairs\n");
      for (const auto& pair : examples) {
        fmt::print("  {} -> {} ({}):\n", pair["true"].get<std::string>(),
                   pair["predicted"].get<std::string>(), pair["count"].get<int64_t>());
        for (const auto& path : pair["examples"]) fmt::print("    {}\n", path.get<std::string>());
      }
    }
    if (!skipped.empty())
      fmt::print("skipped {} unreadable images, e.g. {}\n", skipped.size(), skipped.front().reason);
  }
}

}  // namespace

void add_eval_command(CLI::App& app) {
  auto args = std::make_shared<EvalArgs>();
  CLI::App* cmd = app.add_subcommand("eval", "Evaluate a model file on a dataset split");
  add_model_option(*cmd, args->model);
  add_dataset_options(*cmd, args->data);
  cmd->add_flag("--json", args->json,
                "Print one JSON object (top1, top5, mean_class_accuracy, per_class, "
                "confusion_matrix, num_samples)");
  cmd->add_option("--confusion-csv", args->confusion_csv,
                  "Also write the confusion matrix as CSV here");
  cmd->add_option("--tta", args->tta,
                  "Test-time augmentation: none | flip | five-crop | ten-crop (softmax averaged "
                  "over the views)")
      ->capture_default_str();
  cmd->add_option("--hierarchy", args->hierarchy,
                  "A `class,parent` CSV (any depth): accuracy at every level and the severity "
                  "of mistakes (aircraft, nabirds and inat use their own hierarchy without it)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--reliability", args->reliability,
                  "Write a reliability diagram (PNG) of the 15-bin calibration");
  add_count_option(*cmd, "--confused-examples", args->confused_examples,
                   "List up to N image paths of each most-confused pair", 0, 1000000);
  cmd->add_option("--save-embeddings", args->save_embeddings,
                  "Write embeddings [N, D], labels, predictions and indices (.safetensors)");
  cmd->add_option("--tsne", args->tsne,
                  "Write a t-SNE map of the embeddings coloured by class (.png or .svg)");
  add_count_option(*cmd, "--batch-size", args->batch_size, "Images per batch", 1, 65536);
  add_count_option(*cmd, "--workers", args->workers, "Decode threads", 0, 256);
  add_threads_option(*cmd, args->threads);
  add_dtype_option(*cmd, args->dtype);
  add_count_option(*cmd, "--max-pixels", args->max_pixels,
                   "Images declaring more pixels are skipped and reported, from their header "
                   "(data.max_pixels; 0 = its default)",
                   0, io::kDefaultMaxPixels);
  cmd->add_option(
         "--protocol", args->protocol,
         "classification (the model's classes) | retrieval (every image a query "
         "against the others: Recall@1/2/4/8, MAP@R, R-precision) | fewshot (N-way "
         "K-shot episodes, nearest support mean); retrieval and fewshot work on "
         "classes the model never saw) | gallery (classify by --gallery's classes) | zeroshot "
         "(unseen classes from --attributes)")
      ->check(CLI::IsMember({"classification", "retrieval", "fewshot", "gallery", "zeroshot"}))
      ->capture_default_str();
  cmd->add_option("--gallery,-g", args->gallery,
                  "gallery protocol: the gallery whose classes (matched by name) classify the "
                  "split")
      ->check(CLI::ExistingFile);
  add_count_option(*cmd, "--knn", args->knn,
                   "gallery protocol: vote of the K nearest items (0 = nearest prototype)", 0,
                   100000);
  cmd->add_option("--class-split", args->class_split,
                  "base | val | novel: Chen et al. 2019's class split of the sorted classes "
                  "(base: even indices, val: i % 4 == 1, novel: i % 4 == 3)")
      ->check(CLI::IsMember({"base", "val", "novel"}));
  add_count_option(*cmd, "--ways", args->ways, "fewshot: classes per episode", 2, 100000);
  cmd->add_option("--shots", args->shots, "fewshot: support images per class, e.g. 1,5")
      ->delimiter(',')
      ->check(CLI::Range(int64_t{1}, int64_t{100000}))
      ->capture_default_str();
  add_count_option(*cmd, "--queries", args->queries, "fewshot: query images per class", 1, 100000);
  add_count_option(*cmd, "--episodes", args->episodes, "fewshot: episodes per shot count", 1,
                   10000000);
  cmd->add_option("--seed", args->seed,
                  "fewshot: episode seed; zeroshot: seed of the cross-validation folds")
      ->capture_default_str();
  add_open_set_options(*cmd, *args);
  add_zeroshot_options(*cmd, *args);
  cmd->callback([args] { run(*args); });
}

}  // namespace finch::cli
