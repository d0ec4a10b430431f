#include "finch/models/import.h"

#include <fmt/format.h>

#include <cmath>
#include <fstream>

#include "finch/core/error.h"
#include "finch/core/version.h"
#include "finch/models/registry.h"

namespace finch::models {

namespace {

std::vector<std::string> read_class_names(const std::filesystem::path& file) {
  std::ifstream in(file);
  if (!in) throw Error("cannot read class names from " + file.string());
  std::vector<std::string> names;
  std::string line;
  while (std::getline(in, line)) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    names.push_back(line);
  }
  while (!names.empty() && names.back().empty()) names.pop_back();  // trailing blank lines
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i].empty()) throw Error(fmt::format("{}:{}: empty class name", file.string(), i + 1));
  }
  return names;
}

// Rows of the file's final classifier (torchvision's name for this architecture, or finch's).
int64_t classifier_rows(const StateDict& weights, const std::string& classifier,
                        const ImportOptions& options) {
  for (const auto& [name, tensor] : weights) {
    std::string n = name;
    for (const char* prefix : {"module.", "model."})
      if (n.rfind(prefix, 0) == 0) n = n.substr(std::string(prefix).size());
    if ((n == classifier + ".weight" || n == "head.fc.weight") && tensor.dim() == 2)
      return tensor.size(0);
  }
  throw Error(fmt::format(
      "{} has no classifier tensor '{}.weight': finch import needs a whole {} classifier. To "
      "fine-tune a backbone without its classifier, use model.pretrained in a training recipe",
      options.weights.string(), classifier, options.arch));
}

bool has_tensor_containing(const StateDict& weights, const std::string& part) {
  for (const auto& entry : weights)
    if (entry.first.find(part) != std::string::npos) return true;
  return false;
}

}  // namespace

ImportedModel import_classifier(const ImportOptions& options) {
  const StateDict weights = read_weights_file(options.weights);
  const bool inception = options.arch == "inception_v3";
  ModelSpec spec = {{"backbone", options.arch}, {"head", "linear"}, {"num_classes", 1}};
  if (inception) spec["aux_logits"] = has_tensor_containing(weights, "AuxLogits.");
  const std::string classifier = build_backbone(spec)->torchvision_classifier();
  const int64_t num_classes = classifier_rows(weights, classifier, options);
  spec["num_classes"] = num_classes;
  const int64_t input_size = options.input_size > 0 ? options.input_size : (inception ? 299 : 224);
  spec["input_size"] = input_size;

  ImportedModel out;
  out.model.model = build_classifier(spec);
  out.report = load_pretrained(out.model.model, weights, options.weights.string(), true);
  out.model.model->eval();

  ModelInfo& info = out.model.info;
  info.arch = spec;
  if (options.classes_file.empty()) {
    for (int64_t i = 0; i < num_classes; ++i) info.classes.push_back(fmt::format("class_{}", i));
  } else {
    info.classes = read_class_names(options.classes_file);
    if (static_cast<int64_t>(info.classes.size()) != num_classes)
      throw Error(fmt::format("{} lists {} classes but the classifier in {} has {} outputs",
                              options.classes_file.string(), info.classes.size(),
                              options.weights.string(), num_classes));
  }
  const int64_t resize = std::lround(input_size / 0.875);
  info.preprocess.eval_transforms =
      nlohmann::json::array({{{"type", "resize"}, {"size", resize}, {"antialias", true}},
                             {{"type", "center_crop"}, {"size", input_size}}});
  info.preprocess.input_size = input_size;
  if (inception) {
    info.preprocess.mean = {0.5f, 0.5f, 0.5f};
    info.preprocess.std = {0.5f, 0.5f, 0.5f};
  }
  if (!options.mean.empty()) info.preprocess.mean = options.mean;
  if (!options.std.empty()) info.preprocess.std = options.std;
  if (info.preprocess.mean.size() != 3 || info.preprocess.std.size() != 3)
    throw Error("--mean and --std take three values (R,G,B)");
  info.training = {{"imported_from", options.weights.string()}};
  return out;
}

}  // namespace finch::models
