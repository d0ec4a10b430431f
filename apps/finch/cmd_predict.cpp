#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <iostream>

#include "commands.h"
#include "finch/core/error.h"
#include "finch/eval/predict.h"
#include "finch/io/image.h"
#include "finch/train/trainer.h"

namespace finch::cli {

namespace {

namespace fs = std::filesystem;

struct PredictArgs {
  std::string model;
  std::vector<std::string> inputs;
  int64_t topk = 5, batch_size = 32;
  bool json = false;
  int threads = 0;
};

void print_result(const fs::path& path, const std::vector<eval::ClassScore>& top, bool json) {
  if (json) {
    nlohmann::json items = nlohmann::json::array();
    for (const auto& s : top)
      items.push_back({{"class", s.name}, {"index", s.index}, {"prob", s.prob}});
    std::cout << nlohmann::json{{"path", path.string()}, {"topk", items}}.dump() << "\n";
  } else {
    std::cout << path.string() << "\n";
    for (const auto& s : top)
      std::cout << fmt::format("  {:6.2f}%  {} ({})\n", 100 * s.prob, s.name, s.index);
  }
}

void print_error(const fs::path& path, const std::string& message, bool json) {
  if (json) {
    std::cout << nlohmann::json{{"path", path.string()}, {"error", message}}.dump() << "\n";
  } else {
    std::cout << path.string() << "\n  error: " << message << "\n";
  }
}

void run(const PredictArgs& args) {
  torch::set_num_threads(train::choose_threads(args.threads));
  eval::Predictor predictor(models::load_model_file(args.model));
  auto paths = expand_image_inputs(args.inputs);
  int failures = 0;
  for (size_t begin = 0; begin < paths.size(); begin += args.batch_size) {
    const size_t end = std::min(paths.size(), begin + static_cast<size_t>(args.batch_size));
    std::vector<cv::Mat> images;
    std::vector<fs::path> decoded;
    for (size_t i = begin; i < end; ++i) {
      try {
        images.push_back(io::read_image_rgb(paths[i]));
        decoded.push_back(paths[i]);
      } catch (const Error& e) {
        print_error(paths[i], e.what(), args.json);
        ++failures;
      }
    }
    auto results = predictor.predict(images, args.topk);
    for (size_t i = 0; i < results.size(); ++i) print_result(decoded[i], results[i], args.json);
    std::cout.flush();
  }
  if (paths.empty()) throw Error("no images found in the given paths");
  if (failures > 0 && !args.json) {
    std::cerr << fmt::format("{} of {} images could not be read\n", failures, paths.size());
  }
}

}  // namespace

void add_predict_command(CLI::App& app) {
  auto args = std::make_shared<PredictArgs>();
  CLI::App* cmd =
      app.add_subcommand("predict", "Classify image files and folders with a model file");
  cmd->add_option("--model,-m", args->model, "finch model file (.safetensors)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--topk,-k", args->topk, "Classes to report per image")->capture_default_str();
  cmd->add_flag("--json", args->json,
                "JSON lines: {\"path\", \"topk\": [{\"class\", \"index\", \"prob\"}]} or "
                "{\"path\", \"error\"}");
  cmd->add_option("--batch-size", args->batch_size, "Images per forward pass")
      ->capture_default_str();
  cmd->add_option("--threads", args->threads, "Compute threads (0 = all cores)")
      ->capture_default_str();
  cmd->add_option("inputs", args->inputs, "Image files and/or folders (searched recursively)")
      ->required();
  cmd->callback([args] { run(*args); });
}

}  // namespace finch::cli
