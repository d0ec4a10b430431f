#include <fmt/format.h>

#include <filesystem>

#include "commands.h"
#include "finch/core/config.h"
#include "finch/core/error.h"
#include "finch/core/interrupt.h"
#include "finch/train/trainer.h"

namespace finch::cli {

namespace {

struct TrainArgs {
  std::string config_file, out_dir, resume_dir;
  std::vector<std::string> overrides;
};

void run(const TrainArgs& args) {
  namespace fs = std::filesystem;
  Config config = Config::defaults();
  fs::path run_dir;
  const bool resume = !args.resume_dir.empty();
  if (resume) {
    if (!args.config_file.empty() || !args.out_dir.empty()) {
      throw Error("--resume takes the run folder only; the run's own config.yaml is used");
    }
    run_dir = args.resume_dir;
    if (!fs::exists(run_dir / "config.yaml")) {
      throw Error(run_dir.string() + " is not a finch run folder (no config.yaml)");
    }
    config = Config::load(run_dir / "config.yaml", args.overrides);
  } else {
    if (args.config_file.empty() || args.out_dir.empty()) {
      throw Error("train needs --config FILE.yaml and --out RUN_DIR (or --resume RUN_DIR)");
    }
    run_dir = args.out_dir;
    if (fs::exists(run_dir / "checkpoint") || fs::exists(run_dir / "metrics.jsonl")) {
      throw Error(run_dir.string() + " already holds a run; continue it with --resume " +
                  run_dir.string() + " or choose another --out");
    }
    config = Config::load(args.config_file, args.overrides);
  }
  install_interrupt_handlers();
  auto summary = train::run_training(config, run_dir, resume);
  if (summary.interrupted) {
    std::exit(130);
  }
  fmt::print(
      "trained {} epochs; best val top-1 {:.4f} at epoch {}\nbest model: {}\nlast model: {}\n",
      summary.epochs_completed, summary.best_val_acc, summary.best_epoch,
      summary.best_model.string(), summary.last_model.string());
}

}  // namespace

void add_train_command(CLI::App& app) {
  auto args = std::make_shared<TrainArgs>();
  CLI::App* cmd = app.add_subcommand("train", "Train a model from a YAML recipe into a run folder");
  cmd->add_option("--config,-c", args->config_file,
                  "YAML recipe (keys and defaults: configs/defaults.yaml)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--out,-o", args->out_dir,
                  "Run folder to create (config, metrics, models, checkpoint)");
  cmd->add_option("--resume", args->resume_dir,
                  "Continue the run in this folder from its checkpoint")
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--set", args->overrides,
                  "Override a config key: --set train.epochs=5 (repeatable)")
      ->allow_extra_args(false);
  cmd->callback([args] { run(*args); });
}

}  // namespace finch::cli
