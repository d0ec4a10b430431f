#pragma once
// Model cards (Mitchell et al. 2019, in the Hugging Face README.md form): what a model file
// is, what it was trained on and how, how it scored, and where it is known to fail, written
// from the file's own metadata and the run folder it came from.
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "finch/models/model_file.h"

namespace finch::exporting {

struct CardInputs {
  std::filesystem::path model_file;
  std::string sha256;  // of the model file
  models::ModelInfo info;
  int64_t parameters = 0;
  /// The training recipe (the run folder's config.yaml), if found.
  std::optional<std::string> recipe_yaml;
  /// `finch eval --json` results: (file name, JSON), e.g. the run's test_metrics.json.
  std::vector<std::pair<std::string, nlohmann::json>> metrics;
};

/// Reads the model file and, from the folder it lies in (or `run_dir` when given), the
/// training recipe (config.yaml) and every *metrics.json that `finch eval --json` wrote.
CardInputs gather_card_inputs(const std::filesystem::path& model_file,
                              const std::optional<std::filesystem::path>& run_dir = std::nullopt,
                              const std::vector<std::filesystem::path>& metrics_files = {});

/// The card as Markdown.
std::string model_card(const CardInputs& inputs);

}  // namespace finch::exporting
