#include <fmt/format.h>

#include "commands.h"
#include "finch/core/atomic_file.h"
#include "finch/export/card.h"
#include "finch/export/onnx.h"
#include "finch/models/model_file.h"

namespace finch::cli {

namespace {

struct ExportArgs {
  std::string model, format = "onnx", out, run_dir;
  std::vector<std::string> metrics;
  exporting::OnnxOptions onnx;
};

void run(const ExportArgs& args) {
  if (args.format == "onnx") {
    models::LoadedModel loaded = models::load_model_file(args.model);
    auto result = exporting::export_onnx(loaded, args.out, args.onnx);
    fmt::print(stderr, "wrote {} ({} nodes, {} weight tensors, opset {}, batch {}) and {}\n",
               result.model.string(), result.nodes, result.initializers, args.onnx.opset,
               args.onnx.dynamic_batch ? "dynamic" : "1", result.preprocess.string());
    return;
  }
  std::vector<std::filesystem::path> metrics(args.metrics.begin(), args.metrics.end());
  auto inputs = exporting::gather_card_inputs(
      args.model,
      args.run_dir.empty() ? std::nullopt : std::optional<std::filesystem::path>(args.run_dir),
      metrics);
  write_file_atomic(args.out, exporting::model_card(inputs));
  fmt::print(stderr, "wrote {} (recipe: {}, evaluation results: {})\n", args.out,
             inputs.recipe_yaml ? "found" : "none found", inputs.metrics.size());
}

}  // namespace

void add_export_command(CLI::App& app) {
  auto args = std::make_shared<ExportArgs>();
  CLI::App* cmd = app.add_subcommand(
      "export", "Write a model file as an ONNX graph, or its model card (README.md)");
  add_model_option(*cmd, args->model)->required();
  cmd->add_option("--format,-f", args->format,
                  "onnx: the inference graph (BatchNorm folded) + OUT.preprocess.json; card: "
                  "a model card in Markdown")
      ->check(CLI::IsMember({"onnx", "card"}))
      ->capture_default_str();
  cmd->add_option("--out,-o", args->out, "File to write (M.onnx, README.md)")->required();
  add_count_option(*cmd, "--opset", args->onnx.opset, "ONNX opset version (11..17)", 11, 17)
      ->capture_default_str();
  cmd->add_flag("--dynamic-batch", args->onnx.dynamic_batch,
                "A symbolic batch dimension (default: batch 1)");
  cmd->add_option("--run", args->run_dir,
                  "card: the run folder with config.yaml and *metrics.json (default: the "
                  "model file's folder)")
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--metrics", args->metrics,
                  "card: `finch eval --json` results to report (default: the run folder's "
                  "*metrics.json)")
      ->check(CLI::ExistingFile);
  cmd->callback([args] { run(*args); });
}

}  // namespace finch::cli
