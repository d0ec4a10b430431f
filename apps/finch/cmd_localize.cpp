#include <fmt/format.h>
#include <torch/torch.h>

#include <iostream>

#include "commands.h"
#include "finch/core/config.h"
#include "finch/core/error.h"
#include "finch/data/formats.h"
#include "finch/data/from_config.h"
#include "finch/explain/explainer.h"
#include "finch/train/trainer.h"

namespace finch::cli {

namespace {

struct LocalizeArgs {
  std::string model, format, root, split = "test", method = "gradcam";
  std::vector<std::string> options;
  double threshold = 0.2;
  int64_t layer = 0;
  bool json = false, predicted = false;
  int threads = 0;
};

void run(const LocalizeArgs& args) {
  Config config = Config::defaults();
  config.set("data.format", args.format);
  config.set("data.root", args.root);
  for (const auto& option : args.options) config.apply_override("data." + option);
  torch::set_num_threads(train::choose_threads(args.threads));
  if (!(args.threshold > 0 && args.threshold <= 1))
    throw Error(fmt::format("--threshold {} must be in (0, 1]", args.threshold));
  models::LoadedModel loaded = models::load_model_file(args.model);
  data::DatasetPtr dataset = data::open_split(config, args.split);
  const bool same_classes = dataset->class_names() == loaded.info.classes;
  explain::Explainer explainer(loaded);
  explain::CamOptions options;
  options.method = explain::parse_cam_method(args.method);
  options.layer = args.layer;
  // The annotated class is explained when the dataset's classes are the model's (the usual
  // "ground-truth known" protocol); otherwise, or with --predicted, the predicted class.
  const bool explain_label = same_classes && !args.predicted;
  auto result =
      explain::localize_dataset(explainer, *dataset, options, args.threshold, explain_label,
                                args.json ? ProgressStyle::kNone : ProgressStyle::kAuto);
  if (args.json) {
    std::cout
        << nlohmann::json{{"model", args.model},
                          {"dataset",
                           {{"format", args.format}, {"root", args.root}, {"split", args.split}}},
                          {"method", explain::cam_method_name(options.method)},
                          {"threshold", args.threshold},
                          {"explained_class", explain_label ? "label" : "predicted"},
                          {"images", result.summary.images},
                          {"without_box", result.without_box},
                          {"corloc", result.summary.corloc},
                          {"mean_iou", result.summary.mean_iou},
                          {"pointing", result.summary.pointing}}
               .dump()
        << std::endl;
  } else {
    fmt::print(
        "{} on {} split '{}': {} of the {} class, threshold {} of the max\n"
        "CorLoc (IoU >= 0.5) {:.2f}%  mean IoU {:.4f}  peak inside the box {:.2f}%  over {} "
        "images{}\n",
        args.model, args.format, args.split, explain::cam_method_name(options.method),
        explain_label ? "annotated" : "predicted", args.threshold, 100 * result.summary.corloc,
        result.summary.mean_iou, 100 * result.summary.pointing, result.summary.images,
        result.without_box ? fmt::format(" ({} without a box skipped)", result.without_box) : "");
  }
}

}  // namespace

void add_localize_command(CLI::App& app) {
  auto args = std::make_shared<LocalizeArgs>();
  CLI::App* cmd = app.add_subcommand(
      "localize", "Weakly supervised localization: CAM/attention map -> box, CorLoc and mean IoU");
  cmd->add_option("--model,-m", args->model, "finch model file (.safetensors)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--dataset,-d", args->format, "Dataset format (one with boxes)")->required();
  cmd->add_option("--root,-r", args->root, "Dataset root folder")->required();
  cmd->add_option("--split", args->split, "Split to score")->capture_default_str();
  cmd->add_option("--option", args->options, "Format option as key=value (a data.* config key)");
  cmd->add_option("--method", args->method, "gradcam | gradcam++ | attention")
      ->capture_default_str();
  cmd->add_option("--threshold", args->threshold,
                  "Keep map values >= this fraction of the max (CAM's 20% rule)")
      ->capture_default_str();
  cmd->add_option("--layer", args->layer, "Backbone stage for Grad-CAM (default: last)");
  cmd->add_flag("--predicted", args->predicted,
                "Explain the predicted class instead of the annotated one");
  cmd->add_flag("--json", args->json,
                "Print one JSON object {corloc, mean_iou, pointing, images, without_box, ...}");
  cmd->add_option("--threads", args->threads, "Compute threads (0 = all cores)")
      ->capture_default_str();
  cmd->callback([args] { run(*args); });
}

}  // namespace finch::cli
