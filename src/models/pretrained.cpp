#include "finch/models/pretrained.h"

#include <fmt/format.h>
#include <torch/serialize.h>

#include <algorithm>
#include <map>
#include <set>

#include "finch/core/atomic_file.h"
#include "finch/core/error.h"
#include "finch/io/gguf.h"
#include "finch/io/safetensors.h"
#include "finch/io/tfjs.h"
#include "finch/models/keras_import.h"

namespace finch::models {

namespace fs = std::filesystem;

namespace {

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

std::string conversion_hint(const fs::path& path) {
  return fmt::format(
      "convert it once with `/usr/bin/python3 scripts/pth_to_safetensors.py {} {}` "
      "(docs/pretrained.md)",
      path.string(), fs::path(path).replace_extension(".safetensors").string());
}

StateDict tensors_of(const c10::IValue& value, const fs::path& path) {
  if (!value.isGenericDict())
    throw Error(path.string() + ": holds a " + value.tagKind() + ", not a dict of tensors; " +
                conversion_hint(path));
  auto dict = value.toGenericDict();
  for (const char* wrapper : {"state_dict", "model"}) {  // training checkpoints
    for (const auto& entry : dict) {
      if (entry.key().isString() && entry.key().toStringRef() == wrapper &&
          entry.value().isGenericDict())
        return tensors_of(entry.value(), path);
    }
  }
  StateDict out;
  for (const auto& entry : dict) {
    if (!entry.key().isString() || !entry.value().isTensor()) continue;
    out.emplace_back(entry.key().toStringRef(), entry.value().toTensor());
  }
  if (out.empty())
    throw Error(path.string() + ": the dict holds no named tensors; " + conversion_hint(path));
  return out;
}

StateDict read_pytorch_file(const fs::path& path) {
  const std::string bytes = read_file(path);
  if (bytes.size() < 4 || bytes.compare(0, 4, "PK\x03\x04") != 0)
    throw Error(path.string() +
                ": not a PyTorch zip file (an old-format torch.save file or another format); " +
                conversion_hint(path));
  c10::IValue value;
  try {
    value = torch::pickle_load(std::vector<char>(bytes.begin(), bytes.end()));
  } catch (const c10::Error& e) {
    // LibTorch's unpickler reads plain dicts of tensors only; `torch.save(model.state_dict())`
    // writes an OrderedDict, which needs Python.
    throw Error(path.string() + ": LibTorch cannot read this PyTorch file (" +
                std::string(e.what_without_backtrace()).substr(0, 120) +
                "...); state dicts saved from Python are OrderedDicts, which need Python to "
                "read: " +
                conversion_hint(path));
  }
  return tensors_of(value, path);
}

std::string listed(const std::vector<std::string>& names, size_t limit = 6) {
  std::string s;
  for (size_t i = 0; i < names.size() && i < limit; ++i) s += (i ? ", " : "") + names[i];
  if (names.size() > limit) s += fmt::format(", ... ({} in all)", names.size());
  return s;
}

std::string strip_wrappers(std::string name) {
  for (bool changed = true; changed;) {
    changed = false;
    for (const char* prefix : {"module.", "model.", "_orig_mod."}) {
      if (starts_with(name, prefix)) {
        name = name.substr(std::string(prefix).size());
        changed = true;
      }
    }
  }
  return name;
}

}  // namespace

StateDict read_weights_file(const fs::path& path) {
  if (!fs::exists(path)) throw Error("pretrained weights not found: " + path.string());
  const std::string ext = path.extension().string();
  if (ext == ".safetensors") return io::read_safetensors(path).tensors;
  // GGUF by extension, or by its magic whatever the file is called.
  if (ext == ".gguf" || io::has_gguf_magic(path)) return io::read_gguf(path).tensors;
  if (ext == ".pth" || ext == ".pt" || ext == ".bin" || ext == ".ckpt")
    return read_pytorch_file(path);
  if (io::is_tfjs_model(path)) return convert_keras(io::read_tfjs(path), path.string()).weights;
  throw Error(path.string() + ": unknown weights format '" + ext +
              "' (use .safetensors, .gguf (F32, F16, BF16 or Q8_0 tensors), a PyTorch .pth / "
              ".pt file, or a TF.js layers model's model.json)");
}

std::string WeightsReport::summary() const {
  std::string s = fmt::format("{}: loaded {} tensors", source, loaded.size());
  if (!adapted.empty()) s += fmt::format("; resized for this model: {}", listed(adapted));
  if (!reinitialised.empty())
    s += fmt::format("; classifier left at initialisation (other class count): {}",
                     listed(reinitialised));
  if (!missing.empty()) s += fmt::format("; missing: {}", listed(missing));
  if (!unexpected.empty()) s += fmt::format("; unused: {}", listed(unexpected));
  if (!mismatched.empty()) s += fmt::format("; shape mismatch: {}", listed(mismatched));
  return s;
}

WeightsReport load_pretrained(Classifier& model, const StateDict& weights,
                              const std::string& source, bool strict) {
  WeightsReport report;
  report.source = source;
  std::map<std::string, torch::Tensor> targets;
  for (auto& [name, tensor] : state_dict(*model)) targets.emplace(name, tensor);
  const std::string classifier = model->backbone()->torchvision_classifier() + ".";
  std::set<std::string> class_dependent;
  for (const auto& name : model->backbone()->class_dependent_tensors())
    class_dependent.insert("backbone." + name);

  auto target_name = [&](const std::string& given) -> std::string {
    const std::string name = strip_wrappers(given);
    if (targets.count(name)) return name;
    if (starts_with(name, classifier)) return "head.fc." + name.substr(classifier.size());
    if (targets.count("backbone." + name)) return "backbone." + name;
    return "";
  };

  std::set<std::string> assigned;
  std::vector<std::pair<torch::Tensor, torch::Tensor>> copies;  // (target, source)
  size_t backbone_loaded = 0;
  for (const auto& [given, tensor] : weights) {
    const std::string name = target_name(given);
    auto it = targets.find(name);
    if (it == targets.end()) {
      report.unexpected.push_back(given);
      continue;
    }
    if (!assigned.insert(name).second) {
      report.unexpected.push_back(given + " (a second tensor for " + name + ")");
      continue;
    }
    torch::Tensor source = tensor;
    if (source.sizes() != it->second.sizes() && starts_with(name, "backbone.")) {
      torch::Tensor adapted = model->backbone()->adapt_pretrained_tensor(
          name.substr(std::string("backbone.").size()), source);
      if (adapted.defined()) {
        report.adapted.push_back(fmt::format("{} ({} -> {})", name, fmt::join(source.sizes(), "x"),
                                             fmt::join(adapted.sizes(), "x")));
        source = adapted;
      }
    }
    if (source.sizes() != it->second.sizes()) {
      const bool for_classes = starts_with(name, "head.") || class_dependent.count(name);
      (for_classes ? report.reinitialised : report.mismatched)
          .push_back(fmt::format("{} (model {}, file {})", name, fmt::join(it->second.sizes(), "x"),
                                 fmt::join(tensor.sizes(), "x")));
      continue;
    }
    copies.emplace_back(it->second, source);
    report.loaded.push_back(name);
    if (starts_with(name, "backbone.")) ++backbone_loaded;
  }
  for (const auto& [name, tensor] : targets) {
    // Matched by name but re-initialised or mismatched counts as reported already.
    if (!assigned.count(name)) report.missing.push_back(name);
  }
  if (backbone_loaded == 0) {
    throw Error(fmt::format(
        "{}: none of its {} tensors match the backbone's names (weights of another architecture?); "
        "first names in the file: {}",
        source, weights.size(), [&] {
          std::vector<std::string> names;
          for (size_t i = 0; i < weights.size() && i < 4; ++i) names.push_back(weights[i].first);
          return listed(names);
        }()));
  }
  if (strict && (!report.missing.empty() || !report.unexpected.empty() ||
                 !report.mismatched.empty() || !report.reinitialised.empty())) {
    throw Error("strict loading failed: " + report.summary());
  }
  torch::NoGradGuard no_grad;
  for (auto& [target, tensor] : copies) target.copy_(tensor.to(target.dtype()));
  return report;
}

}  // namespace finch::models
