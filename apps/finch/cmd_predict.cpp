#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <optional>

#include "commands.h"
#include "finch/core/error.h"
#include "finch/core/threads.h"
#include "finch/eval/open_set.h"
#include "finch/eval/session.h"
#include "finch/gallery/gallery.h"
#include "finch/io/image.h"
#include "finch/models/inference.h"
#include "finch/train/trainer.h"

namespace finch::cli {

namespace {

namespace fs = std::filesystem;

struct PredictArgs {
  std::string model, dtype = "auto", gallery, reject;
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

// "None of these": the open-set score of an image against the rejection threshold.
struct Rejection {
  eval::OpenSetScore score = eval::OpenSetScore::kMaxLogit;
  double threshold = 0;
  int64_t knn = 50;
};

struct Verdict {
  double score = 0;
  bool unknown = false;
};

// --reject SCORE[:THRESHOLD]; without a threshold, the one `eval --calibrate-tpr` stored.
Rejection parse_rejection(const std::string& spec, const eval::InferenceSession& session) {
  Rejection r;
  const auto colon = spec.find(':');
  r.score = eval::parse_open_set_score(spec.substr(0, colon));
  const std::string name = eval::to_string(r.score);
  const nlohmann::json& stored = session.info().open_set;
  if (stored.is_object() && stored.contains("knn")) r.knn = stored["knn"].value("k", r.knn);
  if (colon != std::string::npos) {
    try {
      size_t used = 0;
      r.threshold = std::stod(spec.substr(colon + 1), &used);
      if (used != spec.size() - colon - 1) throw std::invalid_argument("trailing");
    } catch (const std::exception&) {
      throw Error("--reject " + spec + ": the threshold after ':' must be a number");
    }
    return r;
  }
  if (!stored.is_object() || !stored.contains("thresholds") || !stored["thresholds"].contains(name))
    throw Error("--reject " + name + ": the model file has no calibrated threshold for '" + name +
                "'; run `finch eval --open-set --calibrate-tpr 0.95 ...` on it, or give one as "
                "--reject " +
                name + ":THRESHOLD");
  r.threshold = stored["thresholds"][name].get<double>();
  return r;
}

void print_result(const fs::path& path, const std::vector<Answer>& top,
                  const std::optional<Verdict>& verdict, bool json) {
  if (json) {
    nlohmann::json items = nlohmann::json::array();
    for (const auto& a : top) {
      nlohmann::json item{{"class", a.name}, {"index", a.index}, {"prob", a.prob}};
      if (a.score) item["score"] = *a.score;
      items.push_back(item);
    }
    nlohmann::json line{{"path", path.string()}};
    if (verdict) line["unknown"] = verdict->unknown, line["score"] = verdict->score;
    line["topk"] = items;
    std::cout << line.dump() << "\n";
  } else {
    std::cout << path.string() << (verdict && verdict->unknown ? "  (unknown: none of these)" : "")
              << "\n";
    if (verdict) std::cout << fmt::format("  open-set score {:.6g}\n", verdict->score);
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
  torch::set_num_threads(choose_threads(args.threads));
  eval::InferenceSession session(args.model, eval::session_options_for_dtype(args.dtype));
  if (!args.json) report_dtype(session);
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
  std::optional<Rejection> rejection;
  if (!args.reject.empty()) {
    rejection = parse_rejection(args.reject, session);
    if (rejection->score == eval::OpenSetScore::kKnn && !by_gallery)
      throw Error(
          "--reject knn measures the distance to known images: give --gallery G (built "
          "from the model's training images)");
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
    if (rejection && rejection->score != eval::OpenSetScore::kKnn && !output.logits.defined())
      throw Error("this model returns no logits for --reject " + eval::to_string(rejection->score));
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
    std::vector<std::optional<Verdict>> verdicts(answers.size());
    if (rejection) {
      const torch::Tensor scores =
          rejection->score == eval::OpenSetScore::kKnn
              ? gallery::kth_similarity(output.embedding, by_gallery->embeddings(), rejection->knn)
              : eval::logit_score(output.logits, rejection->score);
      for (size_t i = 0; i < answers.size(); ++i) {
        const double v = scores[static_cast<int64_t>(i)].item<double>();
        verdicts[i] = Verdict{v, !(v >= rejection->threshold)};
      }
    }
    for (size_t i = 0; i < answers.size(); ++i)
      print_result(decoded[i], answers[i], verdicts[i], args.json);
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
                "JSON lines: {\"path\", [\"unknown\", \"score\" with --reject,] \"topk\": "
                "[{\"class\", \"index\", \"prob\"}]} or "
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
  cmd->add_option("--reject", args->reject,
                  "\"None of these\": SCORE[:THRESHOLD] with SCORE msp | maxlogit | energy | knn "
                  "(knn needs --gallery); images scoring below the threshold get \"unknown\": "
                  "true. Without THRESHOLD, the one `finch eval --open-set --calibrate-tpr` "
                  "stored in the model file");
  cmd->add_option("inputs", args->inputs, "Image files and/or folders (searched recursively)")
      ->required();
  cmd->callback([args] { run(*args); });
}

}  // namespace finch::cli
