#pragma once
// What the CLI integration tests share: the tiny recipe (ResNet-20 of width 8 on the 16 px
// images of make_pattern_imagefolder, trained in seconds) and JSON-lines parsing.
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "test_support.h"

namespace finch::test {

/// The tiny imagefolder recipe; `train` is the train section's flow map body (e.g.
/// "epochs: 5, batch_size: 8, progress: lines"), `data_extra` more indented data lines,
/// `tail` more top-level sections.
inline std::string tiny_recipe(const std::string& train, const std::string& data_extra = "",
                               const std::string& tail = "") {
  return R"(seed: 1
threads: 1
data:
  format: imagefolder
  workers: 2
  val_fraction: 0.2
  mean: [0.5, 0.5, 0.5]
  std: [0.25, 0.25, 0.25]
  train_transforms: [{type: hflip, p: 0.5}]
  eval_transforms: [{type: resize, size: [16, 16]}]
)" + data_extra +
         "model: {backbone: resnet20, width: 8, input_size: 16}\ntrain: {" + train +
         "}\noptim: {name: adam, lr: 0.003, weight_decay: 0.0}\n" + tail;
}

/// A model trained once for a test suite by the CLI: pattern images (16 px,
/// make_pattern_imagefolder) in data/train (classes x train_per_class) and data/test (classes x
/// test_per_class), the recipe in recipe.yaml, the run in run/. The suites' SetUpTestSuite makes
/// one; each test checks `exit_code` first, so a failed training shows its output in every test.
class TrainedRun {
 public:
  TrainedRun(const std::string& tag, const std::string& recipe, int classes, int train_per_class,
             int test_per_class)
      : dir_(tag) {
    make_pattern_imagefolder(path("data") / "train", classes, train_per_class, 16, 1);
    make_pattern_imagefolder(path("data") / "test", classes, test_per_class, 16, 2);
    write_text(path("recipe.yaml"), recipe);
    auto result =
        run_command(cli_path().string() + " train --config " + path("recipe.yaml").string() +
                    " --out " + path("run").string() + " --set data.root=" + path("data").string());
    exit_code = result.exit_code;
    output = result.output;
  }
  std::filesystem::path path(const std::string& name) const { return dir_.path() / name; }
  std::string model() const { return path("run/best.safetensors").string(); }
  std::string data() const { return path("data").string(); }

  int exit_code = -1;
  std::string output;  // of `finch train`

 private:
  TempDir dir_;
};

/// The JSON objects of a command's output, one per line starting with '{'.
inline std::vector<nlohmann::json> json_lines(const std::string& text) {
  std::vector<nlohmann::json> out;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line))
    if (!line.empty() && line[0] == '{') out.push_back(nlohmann::json::parse(line));
  return out;
}

}  // namespace finch::test
