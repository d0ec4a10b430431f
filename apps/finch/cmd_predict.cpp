#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <optional>

#include "commands.h"
#include "finch/core/error.h"
#include "finch/eval/session.h"
#include "finch/gallery/gallery.h"
#include "finch/io/image.h"
#include "finch/models/inference.h"
#include "finch/train/trainer.h"

namespace finch::cli {

namespace {

namespace fs = std::filesystem;

struct PredictArgs {
  std::string model, dtype = "fp32", gallery;
  std::vector<std::string> inputs;
  int64_t topk = 5, batch_size = 32, knn = 0, max_pixels = 40000000;
  double temperature = 0.05;
  bool json = false;
  int threads = 0;
};

// One class of an answer; `score` (cosine similarity) only when a gallery answered.
struct Answer {
  std::string name;
  int64_t index = 0;
  double prob = 0;
  std::optional<double> score;
};

void print_result(const fs::path& path, const std::vector<Answer>& top, bool json) {
  if (json) {
    nlohmann::json items = nlohmann::json::array();
    for (const auto& a : top) {
      nlohmann::json item{{"class", a.name}, {"index", a.index}, {"prob", a.prob}};
      if (a.score) item["score"] = *a.score;
      items.push_back(item);
    }
    std::cout << nlohmann::json{{"path", path.string()}, {"topk", items}}.dump() << "\n";
  } else {
    std::cout << path.string() << "\n";
    for (const auto& a : top)
      std::cout << fmt::format("  {:6.2f}%  {} ({}){}\n", 100 * a.prob, a.name, a.index,
                               a.score ? fmt::format("  cosine {:.4f}", *a.score) : "");
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
  eval::SessionOptions session_options;
  session_options.dtype = models::parse_inference_dtype(args.dtype);
  eval::InferenceSession session(args.model, session_options);
  // With a gallery the classes are the gallery's: nearest prototype or k-NN vote.
  std::optional<gallery::Gallery> by_gallery;
  gallery::GalleryClassifierOptions gallery_options;
  if (!args.gallery.empty()) {
    by_gallery = gallery::Gallery::load(args.gallery);
    by_gallery->check_model(session);
    if (by_gallery->size() == 0)
      throw Error(args.gallery + " is empty: add images with `finch gallery add`");
    gallery_options.knn = args.knn;
    gallery_options.temperature = args.temperature;
  } else if (args.knn > 0) {
    throw Error("--knn needs --gallery");
  }
  auto paths = expand_image_inputs(args.inputs);
  if (paths.empty()) throw Error("no images found in the given paths");
  int failures = 0;
  for (size_t begin = 0; begin < paths.size(); begin += args.batch_size) {
    const size_t end = std::min(paths.size(), begin + static_cast<size_t>(args.batch_size));
    std::vector<torch::Tensor> inputs;
    std::vector<fs::path> decoded;
    for (size_t i = begin; i < end; ++i) {
      try {
        inputs.push_back(session.preprocess(io::read_image_rgb(paths[i], args.max_pixels)));
        decoded.push_back(paths[i]);
      } catch (const Error& e) {
        print_error(paths[i], e.what(), args.json);
        ++failures;
      }
    }
    if (inputs.empty()) continue;
    const eval::InferenceOutput output =
        session.forward(torch::stack(inputs), /*normalize_embedding=*/by_gallery.has_value());
    std::vector<std::vector<Answer>> answers;
    if (by_gallery) {
      if (!output.embedding.defined()) throw Error("this model's head returns no embedding");
      for (const auto& top :
           gallery::classify(*by_gallery, output.embedding, args.topk, gallery_options)) {
        auto& row = answers.emplace_back();
        for (const auto& s : top) row.push_back({s.name, s.index, s.prob, s.score});
      }
    } else {
      for (const auto& top : eval::top_k(output.probabilities, session.classes(), args.topk)) {
        auto& row = answers.emplace_back();
        for (const auto& s : top) row.push_back({s.name, s.index, s.prob, std::nullopt});
      }
    }
    for (size_t i = 0; i < answers.size(); ++i) print_result(decoded[i], answers[i], args.json);
    std::cout.flush();
  }
  if (failures > 0 && !args.json) {
    std::cerr << fmt::format("{} of {} images could not be read\n", failures, paths.size());
  }
}

}  // namespace

void add_predict_command(CLI::App& app) {
  auto args = std::make_shared<PredictArgs>();
  CLI::App* cmd =
      app.add_subcommand("predict", "Classify image files and folders with a model file");
  add_model_option(*cmd, args->model);
  add_count_option(*cmd, "--topk,-k", args->topk, "Classes to report per image", 1, 1000000);
  cmd->add_flag("--json", args->json,
                "JSON lines: {\"path\", \"topk\": [{\"class\", \"index\", \"prob\"}]} or "
                "{\"path\", \"error\"}");
  add_count_option(*cmd, "--batch-size", args->batch_size, "Images per forward pass", 1, 65536);
  add_threads_option(*cmd, args->threads);
  add_dtype_option(*cmd, args->dtype);
  add_count_option(*cmd, "--max-pixels", args->max_pixels,
                   "Largest image (width x height), refused from its header before decoding", 1,
                   int64_t{1} << 40);
  cmd->add_option("--gallery,-g", args->gallery,
                  "Classify by this gallery's classes instead of the model's (nearest class "
                  "prototype; see --knn): classes the model never saw, same output")
      ->check(CLI::ExistingFile);
  add_count_option(*cmd, "--knn", args->knn,
                   "With --gallery: vote of the K nearest items instead of prototypes (0 = "
                   "prototypes)",
                   0, 100000);
  cmd->add_option("--gallery-temperature", args->temperature,
                  "With --gallery prototypes: prob = softmax(cosine / T)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("inputs", args->inputs, "Image files and/or folders (searched recursively)")
      ->required();
  cmd->callback([args] { run(*args); });
}

}  // namespace finch::cli
