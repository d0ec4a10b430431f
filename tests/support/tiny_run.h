#pragma once
// What the CLI integration tests share: the tiny recipe (ResNet-20 of width 8 on the 16 px
// images of make_pattern_imagefolder, trained in seconds) and JSON-lines parsing.
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

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
