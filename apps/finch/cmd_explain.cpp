#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <iostream>

#include "commands.h"
#include "finch/core/atomic_file.h"
#include "finch/core/error.h"
#include "finch/core/threads.h"
#include "finch/explain/charts.h"
#include "finch/explain/explainer.h"
#include "finch/io/image.h"
#include "finch/train/trainer.h"

namespace finch::cli {

namespace {

namespace fs = std::filesystem;

struct ExplainArgs {
  std::string model, method = "gradcam", target, out;
  std::vector<std::string> inputs;
  int64_t layer = 0;
  bool raw = false, json = false;
  int threads = 0;
};

void run(const ExplainArgs& args) {
  torch::set_num_threads(choose_threads(args.threads));
  eval::SessionOptions session_options;
  session_options.keep_source_model = true;  // Grad-CAM needs gradients
  eval::InferenceSession session(args.model, session_options);
  explain::Explainer explainer(session);
  explain::CamOptions options;
  options.method = explain::parse_cam_method(args.method);
  options.layer = args.layer;
  if (!args.target.empty()) options.target = explainer.class_index(args.target);
  const auto paths = expand_image_inputs(args.inputs);
  if (paths.empty()) throw Error("no images found in the given paths");
  fs::create_directories(args.out);
  // gradcam++ -> gradcampp in file names.
  std::string tag = explain::cam_method_name(options.method);
  std::replace(tag.begin(), tag.end(), '+', 'p');
  const auto& classes = explainer.info().classes;
  for (const auto& path : paths) {
    const auto e = explainer.explain({io::read_image_rgb(path)}, options).front();
    const fs::path heatmap = fs::path(args.out) / (path.stem().string() + "_" + tag + ".png");
    io::write_image_rgb(heatmap, explain::overlay_heatmap(e.input_rgb, e.cam));
    fs::path raw;
    if (args.raw) {
      raw = fs::path(args.out) / (path.stem().string() + "_" + tag + ".npy");
      write_file_atomic(raw, explain::npy_bytes(e.cam));
    }
    if (args.json) {
      nlohmann::json line{
          {"path", path.string()},          {"method", explain::cam_method_name(options.method)},
          {"target", classes.at(e.target)}, {"target_index", e.target},
          {"target_prob", e.target_prob},   {"predicted", classes.at(e.predicted)},
          {"predicted_index", e.predicted}, {"prob", e.predicted_prob},
          {"heatmap", heatmap.string()},    {"map_size", {e.cam.size(0), e.cam.size(1)}}};
      if (!raw.empty()) line["raw"] = raw.string();
      std::cout << line.dump() << std::endl;
    } else {
      fmt::print("{}: predicted {} ({:.2f}%), {} of {} -> {}{}\n", path.string(),
                 classes.at(e.predicted), 100 * e.predicted_prob,
                 explain::cam_method_name(options.method), classes.at(e.target), heatmap.string(),
                 raw.empty() ? "" : " + " + raw.string());
    }
  }
}

}  // namespace

void add_explain_command(CLI::App& app) {
  auto args = std::make_shared<ExplainArgs>();
  CLI::App* cmd = app.add_subcommand(
      "explain", "Heatmaps of where a model looks (Grad-CAM, Grad-CAM++, attention maps)");
  add_model_option(*cmd, args->model);
  cmd->add_option("--method", args->method,
                  "gradcam | gradcam++ | attention (self_attention and wsdan heads) | rollout "
                  "(ViT backbones)")
      ->capture_default_str();
  cmd->add_option("--target", args->target,
                  "Class to explain, by name or index (default: each image's predicted class)");
  add_count_option(
      *cmd, "--layer", args->layer,
      "Backbone stage for Grad-CAM, 1-based (0 = the deepest stage that reaches the logits)", 0,
      64);
  cmd->add_flag("--raw", args->raw,
                "Also write each map as float32 .npy at feature-map resolution");
  cmd->add_option("--out,-o", args->out, "Output folder")->required();
  cmd->add_flag("--json", args->json,
                "JSON lines: {path, method, target, predicted, prob, heatmap[, raw]}");
  add_threads_option(*cmd, args->threads);
  cmd->add_option("inputs", args->inputs, "Image files and/or folders")->required();
  cmd->callback([args] { run(*args); });
}

}  // namespace finch::cli
