// `finch import` of torchvision weights, then `finch predict` on a real photograph: the same
// top-1 class and close probabilities as torchvision's own PIL pipeline.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "test_support.h"

namespace fs = std::filesystem;
using finch::test::run_command;

namespace {

// A real photograph shipped by Debian's python-matplotlib-data (installed by install-deps).
const fs::path kPhoto = "/usr/share/matplotlib/mpl-data/sample_data/grace_hopper.jpg";

}  // namespace

TEST(Import, PredictAgreesWithTorchvisionOnAPhotograph) {
  ASSERT_TRUE(fs::exists(kPhoto)) << kPhoto << " missing: run scripts/install-deps.sh";
  finch::test::TempDir dir;
  const fs::path weights = dir / "resnet18.safetensors", model = dir / "model.safetensors";
  finch::test::run_python_reference(
      "predict_reference.py",
      kPhoto.string() + " " + weights.string() + " " + (dir / "torchvision.json").string());
  nlohmann::json expected = nlohmann::json::parse(std::ifstream(dir / "torchvision.json"));

  std::ofstream(dir / "classes.txt") << [] {
    std::string s;
    for (int i = 0; i < 1000; ++i) s += "imagenet_" + std::to_string(i) + "\n";
    return s;
  }();
  const std::string cli = finch::test::cli_path().string();
  auto imported =
      run_command(cli + " import --arch resnet18 --weights " + weights.string() + " --classes " +
                  (dir / "classes.txt").string() + " --out " + model.string());
  ASSERT_EQ(imported.exit_code, 0) << imported.output;
  EXPECT_CONTAINS(imported.output, "loaded 122 tensors");

  auto predicted = run_command(cli + " predict --json --threads 1 --model " + model.string() + " " +
                               kPhoto.string() + " 2>/dev/null");
  ASSERT_EQ(predicted.exit_code, 0) << predicted.output;
  auto got = nlohmann::json::parse(predicted.output)["topk"];
  const auto& want = expected["topk"];
  ASSERT_EQ(got.size(), want.size());
  EXPECT_EQ(got[0]["index"], want[0]["index"]) << predicted.output << "\n" << expected.dump();
  EXPECT_EQ(got[0]["class"], "imagenet_" + std::to_string(want[0]["index"].get<int>()));
  // The decode (libjpeg-turbo) and PIL's antialiased resize are reproduced exactly; what is
  // left is float summation order in the network.
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got[i]["index"], want[i]["index"]) << "rank " << i;
    EXPECT_NEAR(got[i]["prob"].get<double>(), want[i]["prob"].get<double>(), 1e-6) << "rank " << i;
  }

  // Errors: a class list of the wrong length and weights of another architecture.
  std::ofstream(dir / "short.txt") << "a\nb\n";
  auto wrong_classes =
      run_command(cli + " import --arch resnet18 --weights " + weights.string() + " --classes " +
                  (dir / "short.txt").string() + " --out " + (dir / "x.safetensors").string());
  EXPECT_EQ(wrong_classes.exit_code, 1);
  EXPECT_CONTAINS(wrong_classes.output, "lists 2 classes but the classifier");
  auto wrong_arch = run_command(cli + " import --arch resnet50 --weights " + weights.string() +
                                " --out " + (dir / "y.safetensors").string());
  EXPECT_EQ(wrong_arch.exit_code, 1);
  EXPECT_CONTAINS(wrong_arch.output, "strict loading failed");
  EXPECT_FALSE(fs::exists(dir / "y.safetensors"));
}
