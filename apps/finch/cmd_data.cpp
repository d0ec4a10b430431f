#include <filesystem>
#include <iostream>
#include <string>

#include "commands.h"
#include "finch/core/config.h"
#include "finch/core/error.h"
#include "finch/core/progress.h"
#include "finch/data/formats.h"
#include "finch/data/info.h"
#include "finch/doctor/doctor.h"

namespace finch::cli {

namespace fs = std::filesystem;

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

struct DoctorArgs {
  std::string format, root, config_file, model, groups, out, progress = "auto";
  std::vector<std::string> overrides;
  int cv = 0, threads = -1;
  bool json = false;
};

void run_doctor(const DoctorArgs& args) {
  // The recipe (needed with --cv: the fold models are trained with it) supplies format
  // options and doctor.* thresholds; --dataset and --root win over it.
  if (args.cv > 0 && args.config_file.empty())
    throw Error(
        "--cv trains fold models and needs --config RECIPE (e.g. configs/fashion_mnist.yaml)");
  Config config = Config::load(args.config_file, args.overrides);
  config.set_string("data.format", args.format);
  config.set_string("data.root", args.root);
  doctor::DoctorOptions options = doctor::doctor_options(config);
  options.out = args.out;
  options.model = args.model;
  options.cv_folds = args.cv;
  options.cv_recipe = args.config_file;
  options.groups = args.groups;
  if (args.threads >= 0) options.threads = args.threads;
  options.progress = args.json ? ProgressStyle::kNone : parse_progress_style(args.progress);
  const doctor::DoctorReport report = doctor::run_doctor(config, options);
  doctor::write_doctor_outputs(report, options);
  if (args.json) {
    std::cout << doctor::to_json(report, options).dump() << std::endl;
    return;
  }
  std::cout << doctor::format_summary(report, options)
            << "written: " << (fs::path(args.out) / "doctor.html").string() << ", doctor.json, "
            << "flagged.csv" << (fs::exists(fs::path(args.out) / "clean.csv") ? ", clean.csv" : "")
            << std::endl;
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

  auto d = std::make_shared<DoctorArgs>();
  CLI::App* doctor = data->add_subcommand(
      "doctor",
      "Find corrupt, odd, poor, duplicate, leaked, mislabelled and outlying images and class "
      "imbalance in every split; write doctor.html, doctor.json, flagged.csv and clean.csv. "
      "Never changes the dataset folder");
  doctor->add_option("--dataset,-d", d->format, dataset_format_help())->required();
  doctor->add_option("--root,-r", d->root, "Dataset root folder")
      ->required()
      ->check(CLI::ExistingDirectory);
  doctor->add_option("--out,-o", d->out, "Report folder (not inside the dataset)")->required();
  doctor
      ->add_option("--config,-c", d->config_file,
                   "YAML recipe: format options, doctor.* thresholds, and with --cv the "
                   "training recipe of the fold models")
      ->check(CLI::ExistingFile);
  doctor->add_option("--set", d->overrides, "Override a config key: --set doctor.phash_distance=2")
      ->allow_extra_args(false);
  doctor
      ->add_option("--model,-m", d->model,
                   "A model of the dataset's classes: probabilities for label issues (use one "
                   "not trained on the images checked), embeddings for near-duplicates and "
                   "outliers")
      ->check(CLI::ExistingFile);
  add_count_option(*doctor, "--cv", d->cv,
                   "Train K fold models with --config and use their out-of-sample probabilities "
                   "(0: off)",
                   0, 100);
  doctor
      ->add_option("--groups", d->groups,
                   "CSV `path,GROUP...` (camera, site, ...): accuracy and calibration per group")
      ->check(CLI::ExistingFile);
  doctor->add_option("--threads", d->threads, "Threads (0: all cores; default: the config's)")
      ->check(CLI::Range(0, 1024));
  doctor->add_option("--progress", d->progress, "auto | bar | lines | none")
      ->check(CLI::IsMember({"auto", "bar", "lines", "none"}))
      ->capture_default_str();
  doctor->add_flag("--json", d->json, "Print doctor.json's object on one line");
  doctor->callback([d] { run_doctor(*d); });
}

}  // namespace finch::cli
