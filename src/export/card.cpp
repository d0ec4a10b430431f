#include "finch/export/card.h"

#include <fmt/format.h>

#include <algorithm>
#include <fstream>

#include "finch/core/atomic_file.h"
#include "finch/core/error.h"
#include "finch/core/sha256.h"
#include "finch/core/version.h"

namespace finch::exporting {

namespace fs = std::filesystem;

namespace {

std::string percent(double fraction) { return fmt::format("{:.2f}%", 100.0 * fraction); }

nlohmann::json read_json(const fs::path& file) {
  try {
    return nlohmann::json::parse(read_file(file));
  } catch (const nlohmann::json::exception& e) {
    throw Error(file.string() + ": not a `finch eval --json` result (" + e.what() + ")");
  }
}

void write_classes(std::string& md, const std::vector<std::string>& classes) {
  md +=
      fmt::format("\n## Classes\n\n{} classes, in output order (index: name):\n\n", classes.size());
  const size_t shown = std::min<size_t>(classes.size(), 200);
  for (size_t i = 0; i < shown; ++i)
    md += fmt::format("{}: {}{}", i, classes[i], i + 1 < shown ? ", " : "");
  if (shown < classes.size())
    md += fmt::format(", ... ({} more in the model file)", classes.size() - shown);
  md += "\n";
}

void write_metrics(std::string& md, const std::string& name, const nlohmann::json& m) {
  const auto& ds = m.value("dataset", nlohmann::json::object());
  md += fmt::format("\n### {} ({} split of `{}` at `{}`, {} images)\n\n", name,
                    ds.value("split", "?"), ds.value("format", "?"), ds.value("root", "?"),
                    m.value("num_samples", 0));
  md += "| metric | value |\n| --- | --- |\n";
  for (const char* key : {"top1", "top5", "mean_class_accuracy"})
    if (m.contains(key)) md += fmt::format("| {} | {} |\n", key, percent(m[key].get<double>()));
  if (m.contains("macro"))
    md += fmt::format("| macro F1 | {} |\n", percent(m["macro"].value("f1", 0.0)));
  if (m.contains("ece"))
    md += fmt::format("| expected calibration error | {:.4f} |\n", m["ece"].get<double>());
  if (m.contains("tta"))
    md += fmt::format("| test-time augmentation | {} |\n", m["tta"].get<std::string>());
}

// What the metrics say the model gets wrong: its weakest classes and most confused pairs.
void write_limits(std::string& md, const CardInputs& in) {
  md += "\n## Known limits\n\n";
  md += fmt::format(
      "- It always answers one of its {} classes: an image of anything else gets the closest "
      "one{}.\n",
      in.info.classes.size(),
      in.info.open_set.is_null()
          ? " (no open-set threshold is calibrated: `finch eval --open-set --calibrate-tpr` "
            "stores one)"
          : ", unless the calibrated open-set threshold rejects it (see below)");
  md += fmt::format(
      "- Images are resized to {} px as described under Preprocessing; details smaller than "
      "that resolution keeps are invisible to it.\n",
      in.info.preprocess.input_size);
  for (const auto& [name, m] : in.metrics) {
    if (m.contains("per_class") && m["per_class"].is_array() && !m["per_class"].empty()) {
      auto rows = m["per_class"];
      std::vector<nlohmann::json> sorted(rows.begin(), rows.end());
      std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) {
        return a.value("recall", 0.0) < b.value("recall", 0.0);
      });
      std::string weakest;
      for (size_t i = 0; i < std::min<size_t>(3, sorted.size()); ++i)
        weakest += fmt::format("{}{} (recall {})", i ? ", " : "", sorted[i].value("class", "?"),
                               percent(sorted[i].value("recall", 0.0)));
      md += fmt::format("- Weakest classes in {}: {}.\n", name, weakest);
    }
    if (m.contains("most_confused") && m["most_confused"].is_array()) {
      std::string pairs;
      int shown = 0;
      for (const auto& p : m["most_confused"]) {
        if (shown == 3) break;
        pairs += fmt::format("{}{} taken for {} ({} times)", shown ? ", " : "",
                             p.value("true", "?"), p.value("predicted", "?"), p.value("count", 0));
        ++shown;
      }
      if (shown) md += fmt::format("- Most confused in {}: {}.\n", name, pairs);
    }
  }
  if (in.metrics.empty())
    md +=
        "- No evaluation results were found next to the model file: run `finch eval "
        "--model M --dataset F --root R --json > test_metrics.json` and export the card "
        "again.\n";
}

}  // namespace

CardInputs gather_card_inputs(const fs::path& model_file, const std::optional<fs::path>& run_dir,
                              const std::vector<fs::path>& metrics_files) {
  CardInputs in;
  in.model_file = model_file;
  models::LoadedModel loaded = models::load_model_file(model_file);
  in.info = loaded.info;
  in.sha256 = sha256_file(model_file);
  for (const auto& p : loaded.model->parameters()) in.parameters += p.numel();
  const fs::path dir = run_dir ? *run_dir : model_file.parent_path();
  if (fs::exists(dir / "config.yaml")) in.recipe_yaml = read_file(dir / "config.yaml");
  std::vector<fs::path> files = metrics_files;
  if (files.empty() && fs::is_directory(dir)) {
    for (const auto& entry : fs::directory_iterator(dir)) {
      const std::string name = entry.path().filename().string();
      if (entry.is_regular_file() && name.size() > 12 &&
          name.compare(name.size() - 12, 12, "metrics.json") == 0)
        files.push_back(entry.path());
    }
    std::sort(files.begin(), files.end());
  }
  for (const auto& f : files) {
    nlohmann::json m = read_json(f);
    if (!m.is_object() || !m.contains("top1")) continue;  // not an eval result
    in.metrics.emplace_back(f.filename().string(), std::move(m));
  }
  return in;
}

std::string model_card(const CardInputs& in) {
  const auto& info = in.info;
  const auto& arch = info.arch;
  std::string md = fmt::format(
      "---\nlibrary_name: finch\ntags: [image-classification, fine-grained]\n---\n\n"
      "# {}: {} + {} head, {} classes\n\n",
      in.model_file.filename().string(), arch.value("backbone", "?"), arch.value("head", "?"),
      info.classes.size());
  md += fmt::format(
      "A finch model file (safetensors with its metadata; loads in PyTorch with torchvision's "
      "parameter names, docs/model-files.md).\n\n"
      "- File: `{}`\n- SHA-256: `{}`\n- Written by finch {} (this card by finch {})\n"
      "- Parameters: {}\n",
      in.model_file.string(), in.sha256, info.finch_version.empty() ? "?" : info.finch_version,
      kVersion, in.parameters);

  md += "\n## Architecture\n\n| | |\n| --- | --- |\n";
  for (const char* key : {"backbone", "head", "input_size", "num_classes", "width", "dropout"})
    if (arch.contains(key)) md += fmt::format("| {} | {} |\n", key, arch[key].dump());
  if (arch.contains("attention"))
    md += fmt::format("| attention | {} |\n", arch["attention"].value("type", "none"));
  md += "\n<details><summary>Every architecture option</summary>\n\n```json\n" + arch.dump(2) +
        "\n```\n</details>\n";
  write_classes(md, info.classes);

  md += fmt::format(
      "\n## Preprocessing\n\nRGB image -> eval transforms `{}` -> float in [0, 1] -> "
      "normalise with mean {} and std {} -> [B, 3, {}, {}]. `finch predict`, `finch serve` and "
      "the Python module apply it from the file; `finch export --format onnx` writes it next "
      "to the ONNX graph.\n",
      info.preprocess.eval_transforms.dump(), nlohmann::json(info.preprocess.mean).dump(),
      nlohmann::json(info.preprocess.std).dump(), info.preprocess.input_size,
      info.preprocess.input_size);

  md += "\n## Training\n\n";
  if (info.training.is_object() && !info.training.empty()) {
    for (const auto& [key, value] : info.training.items())
      md += fmt::format("- {}: {}\n", key,
                        value.is_string() ? value.get<std::string>() : value.dump());
  } else {
    md += "No training provenance in the file (imported weights).\n";
  }
  if (in.recipe_yaml)
    md += "\nThe recipe of the run (its config.yaml, every key resolved):\n\n```yaml\n" +
          *in.recipe_yaml +
          (in.recipe_yaml->empty() || in.recipe_yaml->back() == '\n' ? "" : "\n") + "```\n";

  md += "\n## Evaluation\n";
  if (in.metrics.empty()) md += "\nNo `finch eval --json` results were found.\n";
  for (const auto& [name, m] : in.metrics) write_metrics(md, name, m);

  if (!info.open_set.is_null())
    md += "\n## Open-set rejection\n\n```json\n" + info.open_set.dump(2) + "\n```\n";

  md += fmt::format(
      "\n## Intended use\n\nTelling apart the {} classes above in images like those of its "
      "training data, as a ranked list of classes with probabilities. Not for decisions about "
      "people, and not for images unlike the training data without checking it on such "
      "images first (`finch eval` on a labelled sample).\n",
      info.classes.size());
  write_limits(md, in);
  return md;
}

}  // namespace finch::exporting
