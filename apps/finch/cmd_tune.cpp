// `finch tune lr`: the learning-rate range test (train/lr_range.h) for a recipe.
#include <fmt/format.h>

#include <filesystem>
#include <iostream>

#include "commands.h"
#include "finch/core/atomic_file.h"
#include "finch/core/config.h"
#include "finch/core/error.h"
#include "finch/explain/charts.h"
#include "finch/train/distributed.h"
#include "finch/train/lr_range.h"

namespace finch::cli {

namespace {

struct TuneLrArgs {
  std::string config_file, out_dir;
  std::vector<std::string> overrides;
  train::LrRangeOptions options;
  bool json = false;
};

void run_tune_lr(const TuneLrArgs& args) {
  if (train::DistEnv::from_environment().distributed())
    throw Error("finch tune lr runs in one process; start it without torchrun");
  namespace fs = std::filesystem;
  const fs::path out = args.out_dir;
  const Config config = Config::load(args.config_file, args.overrides);
  const auto result = train::lr_range_test(config, out, args.options);
  const auto json = train::to_json(result, args.options);
  write_file_atomic(out / "lr_range.json", json.dump(2) + "\n");
  write_file_atomic(out / "lr_range.png", explain::png_bytes(train::lr_range_chart(result)));
  if (args.json) {
    std::cout << json.dump() << std::endl;
    return;
  }
  fmt::print(
      "suggested optim.lr: {:.3g} (steepest loss descent; the loss was lowest at {:.3g}; the "
      "recipe has {:g})\n{} steps, {}\ncurve: {}\n",
      result.suggested_lr, result.min_loss_lr, config.get<double>("optim.lr"), result.points.size(),
      result.stopped, (out / "lr_range.png").string());
}

}  // namespace

void add_tune_command(CLI::App& app) {
  CLI::App* tune = app.add_subcommand("tune", "Find training settings for a recipe");
  tune->require_subcommand(1);
  auto args = std::make_shared<TuneLrArgs>();
  CLI::App* lr = tune->add_subcommand(
      "lr",
      "Learning-rate range test: train while the lr grows exponentially, plot loss against lr "
      "and suggest optim.lr (lr_range.png, lr_range.json in --out)");
  lr->add_option("--config,-c", args->config_file, "YAML recipe")
      ->required()
      ->check(CLI::ExistingFile);
  lr->add_option("--out,-o", args->out_dir, "Folder for lr_range.png, lr_range.json, config.yaml")
      ->required();
  lr->add_option("--set", args->overrides, "Override a config key (repeatable)")
      ->allow_extra_args(false);
  lr->add_option("--min-lr", args->options.min_lr, "First learning rate")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  lr->add_option("--max-lr", args->options.max_lr, "Last learning rate")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  add_count_option(*lr, "--steps", args->options.steps, "Optimizer steps (at most)", 10, 100000);
  lr->add_flag("--json", args->json, "Print the result as JSON");
  lr->callback([args] { run_tune_lr(*args); });
}

}  // namespace finch::cli
