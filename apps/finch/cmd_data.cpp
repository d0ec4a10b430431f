#include <iostream>
#include <string>

#include "commands.h"
#include "finch/core/config.h"
#include "finch/data/formats.h"
#include "finch/data/info.h"

namespace finch::cli {

namespace {

struct DataInfoArgs {
  std::string format, root, config_file;
  std::vector<std::string> overrides;
  bool json = false, check_images = false;
};

void run_info(const DataInfoArgs& args) {
  // The recipe supplies format options (data.level, data.csv_file, ...); --dataset and --root
  // win over it.
  Config config = Config::load(args.config_file, args.overrides);
  config.set("data.format", args.format);
  config.set("data.root", args.root);
  data::InfoOptions options;
  options.check_images = args.check_images;
  options.progress = args.json ? ProgressStyle::kNone : ProgressStyle::kAuto;
  const data::DatasetInfo info = data::dataset_info(config, options);
  if (args.json)
    std::cout << data::to_json(info).dump() << std::endl;
  else
    std::cout << data::format_info(info) << std::flush;
}

}  // namespace

void add_data_command(CLI::App& app) {
  CLI::App* data = app.add_subcommand("data", "Inspect datasets");
  data->require_subcommand(1);
  auto args = std::make_shared<DataInfoArgs>();
  CLI::App* info = data->add_subcommand(
      "info",
      "Classes, images per split and class, image sizes, missing files and boxes of a "
      "dataset, checked against the official counts of the benchmarks");
  info->add_option("--dataset,-d", args->format, dataset_format_help())->required();
  info->add_option("--root,-r", args->root, "Dataset root folder")
      ->required()
      ->check(CLI::ExistingDirectory);
  info->add_option("--config,-c", args->config_file, "YAML recipe for format options")
      ->check(CLI::ExistingFile);
  info->add_option("--set", args->overrides, "Override a config key: --set data.level=family")
      ->allow_extra_args(false);
  info->add_flag("--json", args->json, "Print one JSON object");
  info->add_flag("--check-images", args->check_images,
                 "Decode every image and report unreadable ones (slow)");
  info->callback([args] { run_info(*args); });
}

}  // namespace finch::cli
