#include <fmt/format.h>
#include <torch/torch.h>

#include <filesystem>
#include <iostream>

#include "commands.h"
#include "finch/core/atomic_file.h"
#include "finch/core/threads.h"
#include "finch/explain/report.h"
#include "finch/train/trainer.h"

namespace finch::cli {

namespace {

struct ReportArgs {
  explain::ReportOptions options;
  std::string run_dir, model, out;
  int threads = 0;
};

void run(ReportArgs args) {
  torch::set_num_threads(choose_threads(args.threads));
  args.options.run_dir = args.run_dir;
  args.options.model = args.model;
  args.options.progress = ProgressStyle::kAuto;
  const std::filesystem::path out = args.out.empty()
                                        ? std::filesystem::path(args.run_dir) / "report.html"
                                        : std::filesystem::path(args.out);
  write_file_atomic(out, explain::build_report(args.options));
  std::cout << out.string() << std::endl;
}

}  // namespace

void add_report_command(CLI::App& app) {
  auto args = std::make_shared<ReportArgs>();
  CLI::App* cmd = app.add_subcommand(
      "report", "Write one self-contained report.html for a run (curves, eval, Grad-CAM, t-SNE)");
  cmd->add_option("run_dir", args->run_dir, "Run folder (config.yaml, metrics.jsonl, model)")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--model,-m", args->model, "Model file (default: RUN_DIR/best.safetensors)");
  cmd->add_option("--dataset,-d", args->options.format,
                  "Dataset format (default: the run's config.yaml data section)");
  cmd->add_option("--root,-r", args->options.root, "Dataset root (default: from config.yaml)");
  cmd->add_option("--split", args->options.split, "Split to evaluate")->capture_default_str();
  cmd->add_option("--option", args->options.data_options, "Format option as key=value");
  cmd->add_option(
         "--hierarchy", args->options.hierarchy,
         "CSV of `class,parent` lines: group the confusion matrix by parent (aircraft, inat "
         "and nabirds use their own hierarchy without it)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--out,-o", args->out, "Output HTML (default: RUN_DIR/report.html)");
  add_count_option(*cmd, "--gallery", args->options.gallery,
                   "Grad-CAM examples of correct and of wrong predictions", 0, 10000);
  add_count_option(*cmd, "--tsne-points", args->options.tsne_points,
                   "Images in the t-SNE map (a seeded subsample above this)", 3, 100000);
  add_threads_option(*cmd, args->threads);
  cmd->callback([args] { run(*args); });
}

}  // namespace finch::cli
