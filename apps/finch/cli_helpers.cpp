// Helpers shared by several subcommands.
#include <algorithm>
#include <iostream>
#include <map>

#include "commands.h"
#include "finch/core/error.h"
#include "finch/core/rng.h"
#include "finch/data/formats.h"
#include "finch/data/from_config.h"
#include "finch/io/image.h"
#include "finch/train/distributed.h"

namespace finch::cli {

namespace fs = std::filesystem;

std::vector<fs::path> expand_image_inputs(const std::vector<std::string>& inputs) {
  std::vector<fs::path> paths;
  for (const auto& input : inputs) {
    if (!fs::is_directory(input)) {
      paths.emplace_back(input);
      continue;
    }
    std::vector<fs::path> found;
    for (const auto& entry : fs::recursive_directory_iterator(input)) {
      if (entry.is_regular_file() && io::has_image_extension(entry.path()))
        found.push_back(entry.path());
    }
    std::sort(found.begin(), found.end());
    paths.insert(paths.end(), found.begin(), found.end());
  }
  return paths;
}

CLI::Option* add_model_option(CLI::App& cmd, std::string& model) {
  return cmd.add_option("--model,-m", model, "finch model file (.safetensors)")
      ->required()
      ->check(CLI::ExistingFile);
}

void add_dataset_options(CLI::App& cmd, DatasetArgs& args, bool required) {
  cmd.add_option("--dataset,-d", args.format, dataset_format_help())->required(required);
  cmd.add_option("--root,-r", args.root, "Dataset root folder")->required(required);
  cmd.add_option("--split", args.split, "Split to use")->capture_default_str();
  cmd.add_option("--option", args.options,
                 "Format option as key=value (a data.* config key, e.g. csv_file=a.csv, "
                 "crop_to_box=true, class_range=[100,200])");
}

Config dataset_config(const DatasetArgs& args) {
  // Format-specific options use the `data` keys of the config schema (e.g. csv_file).
  Config config = Config::defaults();
  config.set("data.format", args.format);
  config.set("data.root", args.root);
  for (const auto& option : args.options) config.apply_override("data." + option);
  return config;
}

namespace {
template <typename T>
CLI::Option* count_option(CLI::App& cmd, const std::string& name, T& value, const std::string& help,
                          int64_t min, int64_t max) {
  return cmd.add_option(name, value, help)
      ->check(CLI::Range(static_cast<T>(min), static_cast<T>(max)))
      ->capture_default_str();
}
}  // namespace

CLI::Option* add_count_option(CLI::App& cmd, const std::string& name, int64_t& value,
                              const std::string& help, int64_t min, int64_t max) {
  return count_option(cmd, name, value, help, min, max);
}

CLI::Option* add_count_option(CLI::App& cmd, const std::string& name, int& value,
                              const std::string& help, int64_t min, int64_t max) {
  return count_option(cmd, name, value, help, min, max);
}

void add_threads_option(CLI::App& cmd, int& threads) {
  add_count_option(cmd, "--threads", threads, "Compute threads (0 = all cores)", 0, 1024);
}

void add_dtype_option(CLI::App& cmd, std::string& dtype) {
  cmd.add_option("--dtype", dtype,
                 "Inference precision: fp32 | bf16 | int8 | auto (bf16 weights and activations "
                 "are fast on CPUs with AMX / AVX512_BF16; auto uses them there when the model "
                 "file records a bf16 check with >= 99.5% top-1 agreement with fp32, made by "
                 "`finch train` or `finch bench agree --record`; else fp32. int8: ResNets whose "
                 "file records a calibration, made by `finch bench agree --dtype int8 --record`)")
      ->check(CLI::IsMember({"fp32", "bf16", "int8", "auto"}))
      ->capture_default_str();
}

void report_dtype(const eval::InferenceSession& session) {
  if ((session.options().auto_dtype && session.options().dtype == torch::kBFloat16) ||
      session.options().dtype == torch::kQUInt8)
    fmt::print(stderr, "running in {} (--dtype fp32 for exact fp32)\n", session.dtype_decision());
}

void add_image_source_options(CLI::App& cmd, ImageSourceArgs& args, bool class_folders,
                              bool positional) {
  add_dataset_options(cmd, args.data, /*required=*/false);
  if (class_folders)
    cmd.add_option("--images", args.class_folders,
                   "Folder of class subfolders (DIR/<class>/<image>): each image labelled by "
                   "its folder")
        ->check(CLI::ExistingDirectory);
  if (positional)
    cmd.add_option("inputs", args.inputs, "Image files and/or folders (searched recursively)");
  add_count_option(cmd, "--batch-size", args.batch_size, "Images per forward pass", 1, 65536);
  add_count_option(cmd, "--workers", args.workers, "Decode threads (datasets)", 1, 256);
  add_count_option(cmd, "--per-class", args.per_class,
                   "Only K images of each class (a seeded choice; 0 = all): e.g. a gallery "
                   "from five photos per new class",
                   0, int64_t{1} << 40);
  cmd.add_option("--seed", args.seed, "Seed of the --per-class choice")->capture_default_str();
}

namespace {
// Up to `k` sample indices of each class, chosen by a seeded shuffle, in index order.
std::vector<size_t> choose_per_class(const std::vector<int64_t>& labels, int64_t k, uint64_t seed) {
  std::vector<size_t> order(labels.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  Rng rng(seed);
  for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng.below(i)]);
  std::map<int64_t, int64_t> taken;
  std::vector<size_t> chosen;
  for (size_t i : order)
    if (taken[labels[i]]++ < k) chosen.push_back(i);
  std::sort(chosen.begin(), chosen.end());
  return chosen;
}
}  // namespace

std::shared_ptr<train::ProcessGroup> join_inference_ranks(const train::DistEnv& dist) {
  if (!dist.distributed()) return nullptr;
  // Joining waits for every rank to start (each loads the model first), and the same limit
  // then bounds every collective; inference has no train.dist_timeout_s to take it from.
  constexpr std::chrono::minutes kJoinTimeout{3};
  return train::ProcessGroup::connect(dist, kJoinTimeout);
}

gallery::EmbeddedImages embed_image_source(eval::InferenceSession& session,
                                           const ImageSourceArgs& args, bool quiet) {
  const bool from_dataset = !args.data.format.empty() || !args.data.root.empty();
  const int given =
      int(from_dataset) + int(!args.class_folders.empty()) + int(!args.inputs.empty());
  if (given != 1)
    throw Error(
        "give exactly one image source: --dataset F --root R [--split S], --images "
        "DIR_WITH_CLASS_SUBFOLDERS, or image files/folders");
  gallery::EmbedOptions options;
  options.batch_size = args.batch_size;
  options.workers = args.workers;
  options.progress = quiet ? ProgressStyle::kNone : ProgressStyle::kAuto;
  const train::DistEnv dist = train::DistEnv::from_environment();
  if (dist.distributed() && !from_dataset)
    throw Error(
        "under torchrun the ranks share out a dataset (--dataset F --root R); embed image files "
        "and folders on one process");
  if (from_dataset) {
    if (args.data.format.empty() || args.data.root.empty())
      throw Error("a dataset source needs both --dataset and --root");
    data::DatasetPtr dataset = data::open_split(dataset_config(args.data), args.data.split);
    if (args.per_class > 0)
      dataset = std::make_shared<data::SubsetDataset>(
          dataset, choose_per_class(dataset->labels(), args.per_class, args.seed));
    if (!dist.distributed()) return gallery::embed_dataset(session, dataset, options);
    // Each rank embeds its shard; every rank ends with the whole, rank 0 writes it.
    auto group = join_inference_ranks(dist);
    options.shard_rank = dist.rank;
    options.shard_count = dist.world_size;
    if (dist.rank != 0) options.progress = ProgressStyle::kNone;
    return gallery::merge_embedded_shards(
        gallery::embed_dataset(session, dataset, options), *dataset, [&](const torch::Tensor& t) {
          return group->all_gather_varying(t, "gathering embeddings");
        });
  }
  std::vector<fs::path> paths;
  std::vector<int64_t> labels;
  std::vector<std::string> classes;
  if (!args.class_folders.empty()) {
    gallery::list_class_folders(args.class_folders, paths, labels, classes);
    if (args.per_class > 0) {
      const auto chosen = choose_per_class(labels, args.per_class, args.seed);
      std::vector<fs::path> some_paths;
      std::vector<int64_t> some_labels;
      for (size_t i : chosen) some_paths.push_back(paths[i]), some_labels.push_back(labels[i]);
      paths = std::move(some_paths);
      labels = std::move(some_labels);
    }
  } else {
    if (args.per_class > 0)
      throw Error("--per-class needs labelled images (--dataset or --images)");
    paths = expand_image_inputs(args.inputs);
    if (paths.empty()) throw Error("no images found in the given paths");
  }
  return gallery::embed_files(session, paths, labels, classes, options);
}

void report_embed_errors(const gallery::EmbeddedImages& images, size_t limit) {
  for (size_t i = 0; i < images.errors.size() && i < limit; ++i)
    std::cerr << "skipped " << images.errors[i].first << ": " << images.errors[i].second << "\n";
  if (images.errors.size() > limit)
    std::cerr << "... and " << images.errors.size() - limit << " more unreadable images\n";
}

std::string dataset_format_help() {
  std::string names;
  for (const auto& n : data::dataset_format_names()) names += (names.empty() ? "" : ", ") + n;
  return "Dataset format: " + names;
}

}  // namespace finch::cli
