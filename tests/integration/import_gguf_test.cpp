// `finch import` of real pretrained GGUF weights from an npm package (@qvac/classification-ggml:
// torchvision's MobileNetV3-Small fine-tuned to 3 classes, fp16), then `finch predict`: the same
// top-1 class and probabilities as torchvision's mobilenet_v3_small with the same weights.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "test_support.h"

namespace fs = std::filesystem;
using finch::test::run_command;

namespace {

// Fetched by scripts/install-npm.sh (`make deps`), never committed.
const fs::path kWeights =
    fs::path(FINCH_NPM_DIR) / "pretrained" / "mobilenetv3_3class_v3_fp16.gguf";

}  // namespace

TEST(ImportGguf, NpmMobileNetV3PredictsLikeTorchvision) {
  ASSERT_TRUE(fs::exists(kWeights))
      << kWeights << " is missing: run `make deps` (scripts/install-npm.sh fetches it from the "
      << "npm package @qvac/classification-ggml)";
  finch::test::TempDir dir;
  const fs::path model = dir / "model.safetensors";
  finch::test::run_python_reference(
      "gguf_predict_reference.py",
      kWeights.string() + " " + dir.path().string() + " " + (dir / "torchvision.json").string());
  const auto expected = nlohmann::json::parse(std::ifstream(dir / "torchvision.json"));
  ASSERT_EQ(expected["classes"], nlohmann::json::array({"food", "report", "other"}));

  const std::string cli = finch::test::cli_path().string();
  // Strict: every tensor of the file has a finch tensor of the same shape and vice versa.
  auto imported = run_command(cli + " import --arch mobilenet_v3_small --weights " +
                              kWeights.string() + " --out " + model.string());
  ASSERT_EQ(imported.exit_code, 0) << imported.output;
  EXPECT_CONTAINS(imported.output, "loaded 244 tensors");
  EXPECT_CONTAINS(imported.output, "class names food, report, other from");

  std::string images;
  for (const auto& image : expected["images"]) images += " " + image["path"].get<std::string>();
  auto predicted = run_command(cli + " predict --json --threads 1 --topk 3 --model " +
                               model.string() + images + " 2>/dev/null");
  ASSERT_EQ(predicted.exit_code, 0) << predicted.output;
  std::map<std::string, nlohmann::json> by_path;
  std::istringstream lines(predicted.output);
  for (std::string line; std::getline(lines, line);) {
    auto parsed = nlohmann::json::parse(line);
    by_path[parsed["path"].get<std::string>()] = parsed["topk"];
  }
  ASSERT_EQ(by_path.size(), expected["images"].size()) << predicted.output;
  for (const auto& image : expected["images"]) {
    const std::string path = image["path"];
    SCOPED_TRACE(path);
    const auto& probs = image["probs"];
    const auto& topk = by_path[path];
    ASSERT_EQ(topk.size(), 3u);
    int best = 0;
    for (int c = 1; c < 3; ++c)
      if (probs[c].get<double>() > probs[best].get<double>()) best = c;
    EXPECT_EQ(topk[0]["index"], best);
    EXPECT_EQ(topk[0]["class"], expected["classes"][best]);
    for (const auto& entry : topk)
      EXPECT_NEAR(entry["prob"].get<double>(), probs[entry["index"].get<int>()].get<double>(), 1e-3)
          << entry.dump();
  }
}
