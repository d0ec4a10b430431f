#include <fmt/format.h>
#include <torch/torch.h>

#include <filesystem>
#include <iostream>

#include "commands.h"
#include "finch/core/atomic_file.h"
#include "finch/core/config.h"
#include "finch/core/error.h"
#include "finch/core/progress.h"
#include "finch/data/formats.h"
#include "finch/data/from_config.h"
#include "finch/data/loader.h"
#include "finch/eval/evaluate.h"
#include "finch/explain/charts.h"
#include "finch/explain/tsne.h"
#include "finch/io/image.h"
#include "finch/models/inference.h"
#include "finch/models/model_file.h"
#include "finch/train/trainer.h"

namespace finch::cli {

namespace {

struct EvalArgs {
  std::string model, format, root, split = "test", confusion_csv;
  std::string tta = "none", reliability, save_embeddings, tsne;
  size_t confused_examples = 0;
  std::vector<std::string> options;
  bool json = false;
  int64_t batch_size = 256;
  int workers = 2, threads = 0;
};

void run(const EvalArgs& args) {
  // Format-specific options use the `data` keys of the config schema (e.g. csv_file).
  Config config = Config::defaults();
  config.set("data.format", args.format);
  config.set("data.root", args.root);
  for (const auto& option : args.options) config.apply_override("data." + option);
  torch::set_num_threads(train::choose_threads(args.threads));

  models::LoadedModel loaded = models::load_model_file(args.model);
  // open_split honours --option crop_to_box=true (and box_margin) like training does.
  data::DatasetPtr dataset = data::open_split(config, args.split);
  if (dataset->class_names() != loaded.info.classes) {
    throw Error(
        fmt::format("the {} split has {} classes that differ from the model's {} classes "
                    "(names or order); evaluate on data with the model's class list",
                    args.split, dataset->num_classes(), loaded.info.classes.size()));
  }
  data::LoaderOptions options;
  options.batch_size = args.batch_size;
  options.workers = args.workers;
  eval::EvalOptions eval_options;
  eval_options.tta = eval::parse_tta(args.tta);
  eval::EvalRecords records;
  const bool need_records =
      args.confused_examples > 0 || !args.save_embeddings.empty() || !args.tsne.empty();
  if (need_records) eval_options.records = &records;
  data::Loader loader(dataset, eval::tta_pipeline(loaded.info.preprocess, eval_options.tta),
                      options);
  // An inference copy: BatchNorm folded into the convolutions, channels-last weights.
  models::Classifier model = models::optimize_for_inference(loaded.info.arch, loaded.model);
  loaded.model = nullptr;  // the copy is all eval needs: do not hold the weights twice
  eval::Metrics metrics =
      eval::evaluate(model, loader, torch::kCPU,
                     args.json ? ProgressStyle::kNone : ProgressStyle::kAuto, "eval", eval_options);
  const auto skipped = loader.skipped();
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
  const nlohmann::json examples =
      args.confused_examples > 0
          ? eval::confused_examples(metrics, records, *dataset, args.confused_examples)
          : nlohmann::json();
  if (args.json) {
    nlohmann::json out = eval::to_json(metrics);
    out["model"] = args.model;
    out["dataset"] = {{"format", args.format}, {"root", args.root}, {"split", args.split}};
    out["skipped"] = skipped.size();
    out["tta"] = args.tta;
    if (!examples.is_null()) out["confused_examples"] = examples;
    std::cout << out.dump() << std::endl;
  } else {
    fmt::print("{} on {} split '{}' ({})\n{}", args.model, args.format, args.split, args.root,
               eval::format_report(metrics));
    if (eval_options.tta != eval::Tta::kNone)
      fmt::print("test-time augmentation: {} ({} views)\n", args.tta,
                 eval::tta_views(eval_options.tta));
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
  cmd->add_option("--model,-m", args->model, "finch model file (.safetensors)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--dataset,-d", args->format, dataset_format_help())->required();
  cmd->add_option("--root,-r", args->root, "Dataset root folder")->required();
  cmd->add_option("--split", args->split, "Split to evaluate")->capture_default_str();
  cmd->add_option("--option", args->options,
                  "Format option as key=value (a data.* config key, e.g. csv_file=a.csv)");
  cmd->add_flag("--json", args->json,
                "Print one JSON object (top1, top5, mean_class_accuracy, per_class, "
                "confusion_matrix, num_samples)");
  cmd->add_option("--confusion-csv", args->confusion_csv,
                  "Also write the confusion matrix as CSV here");
  cmd->add_option("--tta", args->tta,
                  "Test-time augmentation: none | flip | five-crop | ten-crop (softmax averaged "
                  "over the views)")
      ->capture_default_str();
  cmd->add_option("--reliability", args->reliability,
                  "Write a reliability diagram (PNG) of the 15-bin calibration");
  cmd->add_option("--confused-examples", args->confused_examples,
                  "List up to N image paths of each most-confused pair");
  cmd->add_option("--save-embeddings", args->save_embeddings,
                  "Write embeddings [N, D], labels, predictions and indices (.safetensors)");
  cmd->add_option("--tsne", args->tsne,
                  "Write a t-SNE map of the embeddings coloured by class (.png or .svg)");
  cmd->add_option("--batch-size", args->batch_size, "Images per batch")->capture_default_str();
  cmd->add_option("--workers", args->workers, "Decode threads")->capture_default_str();
  cmd->add_option("--threads", args->threads, "Compute threads (0 = all cores)")
      ->capture_default_str();
  cmd->callback([args] { run(*args); });
}

}  // namespace finch::cli
