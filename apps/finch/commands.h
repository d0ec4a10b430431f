#pragma once
// Each subcommand file adds its CLI11 subcommand and the function that runs it. Commands are
// thin: parse options, call the library, print.
#include <CLI/CLI.hpp>
#include <filesystem>
#include <string>
#include <vector>

#include "finch/core/config.h"
#include "finch/gallery/gallery.h"
#include "finch/train/distributed.h"

namespace finch::cli {

// --- options declared once, picked by the commands that use them ------------------------

/// --model/-m: an existing finch model file.
CLI::Option* add_model_option(CLI::App& cmd, std::string& model);

/// A dataset split named on the command line: --dataset, --root, --split, --option k=v.
struct DatasetArgs {
  std::string format, root, split = "test";
  std::vector<std::string> options;
};
void add_dataset_options(CLI::App& cmd, DatasetArgs& args, bool required = true);
/// The default config with data.format, data.root and the --option overrides applied.
Config dataset_config(const DatasetArgs& args);

/// A count option (batch size, top-k, workers, ...) checked to lie in [min, max], so that
/// `--batch-size 0` is a clear error instead of a loop that never ends.
CLI::Option* add_count_option(CLI::App& cmd, const std::string& name, int64_t& value,
                              const std::string& help, int64_t min, int64_t max);
CLI::Option* add_count_option(CLI::App& cmd, const std::string& name, int& value,
                              const std::string& help, int64_t min, int64_t max);
/// --threads (0 = all cores, up to 1024).
void add_threads_option(CLI::App& cmd, int& threads);
/// --dtype fp32|bf16|auto for inference (eval/precision.h).
void add_dtype_option(CLI::App& cmd, std::string& dtype);
/// One stderr line when `--dtype auto` chose bf16 (what, and why); not with --json, whose
/// consumers often merge the streams (`finch eval --json` reports "dtype" instead).
void report_dtype(const eval::InferenceSession& session);

/// Where images to embed come from: a dataset split (--dataset/--root/--split), a folder of
/// class subfolders (--images, labelled by folder), or image files and folders (unlabelled).
struct ImageSourceArgs {
  DatasetArgs data;
  std::string class_folders;
  std::vector<std::string> inputs;
  int64_t batch_size = 64;
  int workers = 2;
  int64_t per_class = 0;  // > 0: only this many images of each class (seeded choice)
  uint64_t seed = 0;
};
/// Adds the options; `class_folders` adds --images, `positional` the IMAGE_OR_DIR arguments.
void add_image_source_options(CLI::App& cmd, ImageSourceArgs& args, bool class_folders,
                              bool positional);
/// Embeds the chosen source (exactly one must be given); unreadable images become errors.
gallery::EmbeddedImages embed_image_source(eval::InferenceSession& session,
                                           const ImageSourceArgs& args, bool quiet);
/// Prints each unreadable image to stderr ("skipped PATH: WHY"), at most `limit` lines.
/// Under torchrun (WORLD_SIZE > 1): joins the job's ranks for a sharded inference command
/// (eval, embed, gallery); null otherwise. Each rank then works on its shard and rank 0 writes.
std::shared_ptr<train::ProcessGroup> join_inference_ranks(const train::DistEnv& dist);

void report_embed_errors(const gallery::EmbeddedImages& images, size_t limit = 20);

/// Image files named on the command line: files as given, folders expanded recursively to
/// their image files (sorted).
std::vector<std::filesystem::path> expand_image_inputs(const std::vector<std::string>& inputs);

/// "Dataset format: idx, imagefolder, ..." for --dataset help texts.
std::string dataset_format_help();

void add_train_command(CLI::App& app);
void add_tune_command(CLI::App& app);
void add_eval_command(CLI::App& app);
void add_predict_command(CLI::App& app);
void add_import_command(CLI::App& app);
void add_export_command(CLI::App& app);
void add_list_command(CLI::App& app);
/// `finch data info`.
void add_data_command(CLI::App& app);
void add_explain_command(CLI::App& app);
void add_localize_command(CLI::App& app);
void add_report_command(CLI::App& app);
/// `finch bench infer|data|train`.
void add_bench_command(CLI::App& app);
/// `finch embed`.
void add_embed_command(CLI::App& app);
/// `finch gallery build|add|info`.
void add_gallery_command(CLI::App& app);
/// `finch search`.
void add_search_command(CLI::App& app);
/// `finch serve`.
void add_serve_command(CLI::App& app);

}  // namespace finch::cli
