#pragma once
// Each subcommand file adds its CLI11 subcommand and the function that runs it. Commands are
// thin: parse options, call the library, print.
#include <CLI/CLI.hpp>
#include <filesystem>
#include <string>
#include <vector>

namespace finch::cli {

/// Image files named on the command line: files as given, folders expanded recursively to
/// their image files (sorted).
std::vector<std::filesystem::path> expand_image_inputs(const std::vector<std::string>& inputs);

/// "Dataset format: idx, imagefolder, ..." for --dataset help texts.
std::string dataset_format_help();

void add_train_command(CLI::App& app);
void add_eval_command(CLI::App& app);
void add_predict_command(CLI::App& app);
void add_import_command(CLI::App& app);
/// `finch data info`.
void add_data_command(CLI::App& app);
void add_explain_command(CLI::App& app);
void add_localize_command(CLI::App& app);
void add_report_command(CLI::App& app);
/// `finch bench infer|data|train`.
void add_bench_command(CLI::App& app);

}  // namespace finch::cli
