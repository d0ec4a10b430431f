#include <fmt/format.h>
#include <torch/torch.h>

#include <iostream>

#include "commands.h"
#include "finch/core/config.h"
#include "finch/core/error.h"
#include "finch/core/threads.h"
#include "finch/data/formats.h"
#include "finch/data/from_config.h"
#include "finch/explain/explainer.h"
#include "finch/train/trainer.h"

namespace finch::cli {

namespace {

struct LocalizeArgs {
  std::string model, method = "gradcam";
  DatasetArgs data;
  double threshold = 0.2;
  int64_t layer = 0;
  bool json = false, predicted = false;
  int threads = 0;
};

void run(const LocalizeArgs& args) {
  const Config config = dataset_config(args.data);
  torch::set_num_threads(choose_threads(args.threads));
  if (!(args.threshold > 0 && args.threshold <= 1))
    throw Error(fmt::format("--threshold {} must be in (0, 1]", args.threshold));
  eval::SessionOptions session_options;
  session_options.keep_source_model = true;  // Grad-CAM needs gradients
  eval::InferenceSession session(args.model, session_options);
  data::DatasetPtr dataset = data::open_split(config, args.data.split);
  const bool same_classes = dataset->class_names() == session.classes();
  explain::Explainer explainer(session);
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
    std::cout << nlohmann::json{{"model", args.model},
                                {"dataset",
                                 {{"format", args.data.format},
                                  {"root", args.data.root},
                                  {"split", args.data.split}}},
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
        args.model, args.data.format, args.data.split, explain::cam_method_name(options.method),
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
  add_model_option(*cmd, args->model);
  add_dataset_options(*cmd, args->data);
  cmd->add_option("--method", args->method, "gradcam | gradcam++ | attention")
      ->capture_default_str();
  cmd->add_option("--threshold", args->threshold,
                  "Keep map values >= this fraction of the max (CAM's 20% rule)")
      ->capture_default_str();
  add_count_option(*cmd, "--layer", args->layer, "Backbone stage for Grad-CAM (0 = the last)", 0,
                   64);
  cmd->add_flag("--predicted", args->predicted,
                "Explain the predicted class instead of the annotated one");
  cmd->add_flag("--json", args->json,
                "Print one JSON object {corloc, mean_iou, pointing, images, without_box, ...}");
  add_threads_option(*cmd, args->threads);
  cmd->callback([args] { run(*args); });
}

}  // namespace finch::cli
