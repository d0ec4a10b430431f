#include "finch/models/import.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <fstream>

#include "finch/core/error.h"
#include "finch/core/version.h"
#include "finch/io/gguf.h"
#include "finch/io/tfjs.h"
#include "finch/models/keras_import.h"
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

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Class names in a GGUF file's metadata, in output order, and the key(s) they came from:
// `<prefix>class_0`, `<prefix>class_1`, ... strings (what @qvac/classification-ggml writes), or
// one string array named `<prefix>class_names`, `<prefix>classes` or `<prefix>labels`. Used
// only when they name exactly `count` classes; otherwise empty.
std::pair<std::vector<std::string>, std::string> gguf_class_names(const nlohmann::json& metadata,
                                                                  int64_t count) {
  auto nonempty_string = [](const nlohmann::json& v) {
    return v.is_string() && !v.get_ref<const std::string&>().empty();
  };
  for (const auto& [key, value] : metadata.items()) {
    if (ends_with(key, "class_0") && (key.size() == 7 || key[key.size() - 8] == '.')) {
      const std::string prefix = key.substr(0, key.size() - 1);
      std::vector<std::string> names;
      for (int64_t i = 0; i < count; ++i) {
        auto it = metadata.find(prefix + std::to_string(i));
        if (it == metadata.end() || !nonempty_string(*it)) break;
        names.push_back(it->get<std::string>());
      }
      if (static_cast<int64_t>(names.size()) == count &&
          !metadata.contains(prefix + std::to_string(count)))
        return {names, prefix + "<i>"};
    }
    for (const char* suffix : {"class_names", "classes", "labels"}) {
      if (!ends_with(key, suffix) || !value.is_array() ||
          static_cast<int64_t>(value.size()) != count ||
          !std::all_of(value.begin(), value.end(), nonempty_string))
        continue;
      return {value.get<std::vector<std::string>>(), key};
    }
  }
  return {};
}

bool has_tensor_containing(const StateDict& weights, const std::string& part) {
  for (const auto& entry : weights)
    if (entry.first.find(part) != std::string::npos) return true;
  return false;
}

}  // namespace

ImportedModel import_classifier(const ImportOptions& options) {
  StateDict weights;
  nlohmann::json gguf_metadata =
      nlohmann::json::object();  // GGUF files carry typed metadata, sometimes the class names
  const bool inception = options.arch == "inception_v3";
  ModelSpec spec = {{"backbone", options.arch}, {"head", "linear"}, {"num_classes", 1}};
  std::string keras_summary;
  if (options.weights.extension() == ".gguf" || io::has_gguf_magic(options.weights)) {
    io::GgufFile gguf = io::read_gguf(options.weights);
    weights = std::move(gguf.tensors);
    gguf_metadata = std::move(gguf.metadata);
  } else if (io::is_tfjs_model(options.weights)) {
    // A Keras model: its architecture, head and input size come from the file.
    KerasConversion keras = convert_keras(io::read_tfjs(options.weights), options.weights.string());
    if (keras.spec["backbone"] != options.arch)
      throw Error(fmt::format("{} is a Keras {}, not --arch {}", options.weights.string(),
                              keras.spec["backbone"].get<std::string>(), options.arch));
    if (keras.spec["num_classes"].get<int64_t>() < 1)
      throw Error(options.weights.string() +
                  " ends at the backbone (no Dense layer): finch import needs a whole "
                  "classifier; use it as model.pretrained in a training recipe instead");
    spec = keras.spec;
    weights = std::move(keras.weights);
    keras_summary = keras.summary;
  } else {
    weights = read_weights_file(options.weights);
  }
  if (inception && !spec.contains("aux_logits"))
    spec["aux_logits"] = has_tensor_containing(weights, "AuxLogits.");
  const std::string classifier = build_backbone(spec)->torchvision_classifier();
  const int64_t num_classes = classifier_rows(weights, classifier, options);
  spec["num_classes"] = num_classes;
  const int64_t input_size = options.input_size > 0
                                 ? options.input_size
                                 : spec.value("input_size", int64_t{inception ? 299 : 224});
  spec["input_size"] = input_size;

  ImportedModel out;
  out.model.model = build_classifier(spec);
  out.report = load_pretrained(out.model.model, weights, options.weights.string(), true);
  out.model.model->eval();

  ModelInfo& info = out.model.info;
  info.arch = spec;
  info.training = {{"imported_from", options.weights.string()}};
  if (!keras_summary.empty()) info.training["converted"] = keras_summary;
  if (options.classes_file.empty()) {
    auto [names, key] = gguf_class_names(gguf_metadata, num_classes);
    if (!names.empty()) {
      info.classes = names;
      info.training["classes_from"] = options.weights.string() + " metadata " + key;
    }
    for (int64_t i = 0; names.empty() && i < num_classes; ++i)
      info.classes.push_back(fmt::format("class_{}", i));
  } else {
    info.classes = read_class_names(options.classes_file);
    if (static_cast<int64_t>(info.classes.size()) != num_classes)
      throw Error(fmt::format("{} lists {} classes but the classifier in {} has {} outputs",
                              options.classes_file.string(), info.classes.size(),
                              options.weights.string(), num_classes));
  }
  const int64_t resize = std::lround(input_size / 0.875);
  info.preprocess.eval_transforms =
      keras_summary.empty()
          ? nlohmann::json::array({{{"type", "resize"}, {"size", resize}, {"antialias", true}},
                                   {{"type", "center_crop"}, {"size", input_size}}})
          // Keras applications and TF.js apps resize the whole image to the input size.
          : nlohmann::json::array(
                {{{"type", "resize"}, {"size", {input_size, input_size}}, {"antialias", true}}});
  info.preprocess.input_size = input_size;
  // Inception-v3 from torchvision, and Keras applications (preprocess_input: x / 127.5 - 1).
  if (inception || !keras_summary.empty()) {
    info.preprocess.mean = {0.5f, 0.5f, 0.5f};
    info.preprocess.std = {0.5f, 0.5f, 0.5f};
  }
  if (!options.mean.empty()) info.preprocess.mean = options.mean;
  if (!options.std.empty()) info.preprocess.std = options.std;
  if (info.preprocess.mean.size() != 3 || info.preprocess.std.size() != 3)
    throw Error("--mean and --std take three values (R,G,B)");
  return out;
}

}  // namespace finch::models
