// `finch import` of real TF.js Keras models from an npm package (nsfwjs: InceptionV3 and
// MobileNetV2, uint8-quantised, with a Dense 256 -> 128 -> 5 classifier; scripts/install-npm.sh
// unwraps them into model.json + shards), then `finch predict` and `finch embed`: the same
// probabilities and pooled features as TensorFlow.js itself (@tensorflow/tfjs-layers on its CPU
// backend) running the same files on the same pixels, and the same from their `finch export`
// ONNX graphs in ONNX Runtime. Also: the model as model.pretrained in a
// training recipe, and an --arch that does not match the file.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <sstream>

#include "finch/io/safetensors.h"
#include "test_support.h"

namespace fs = std::filesystem;
using finch::test::run_command;

namespace {

const fs::path kPretrained = fs::path(FINCH_NPM_DIR) / "pretrained";

fs::path model_dir(const std::string& model) { return kPretrained / ("nsfwjs_" + model); }

void require_models() {
  for (const char* model : {"inception_v3", "mobilenet_v2"})
    finch::test::require(fs::exists(model_dir(model) / "model.json"),
                         (model_dir(model) / "model.json").string() +
                             " is missing: run `make deps` (scripts/install-npm.sh fetches "
                             "nsfwjs@4.3.0 and unwraps its TF.js models)");
}

// A size x size photo-like test image (smooth colour fields + noise), as PNG and as raw RGB.
void write_image(const fs::path& png, const fs::path& rgb, int size, unsigned seed) {
  cv::Mat image(size, size, CV_8UC3);  // RGB
  cv::RNG rng(seed);
  for (int y = 0; y < size; ++y) {
    for (int x = 0; x < size; ++x) {
      const double v[3] = {128 + 100 * std::sin(x / 17.0 + seed) * std::cos(y / 23.0),
                           128 + 90 * std::cos((x + y) / 31.0), x * 255.0 / size};
      for (int c = 0; c < 3; ++c)
        image.at<cv::Vec3b>(y, x)[c] = cv::saturate_cast<uint8_t>(v[c] + rng.gaussian(20));
    }
  }
  std::ofstream(rgb, std::ios::binary)
      .write(reinterpret_cast<const char*>(image.data),
             static_cast<std::streamsize>(size) * size * 3);
  cv::Mat bgr;
  cv::cvtColor(image, bgr, cv::COLOR_RGB2BGR);
  finch::test::require(cv::imwrite(png.string(), bgr), "cannot write " + png.string());
}

nlohmann::json tfjs_reference(const std::string& model, int size,
                              const std::vector<fs::path>& images) {
  std::string command = "NODE_PATH=" + std::string(FINCH_NPM_DIR) + "/node_modules node " +
                        (finch::test::source_dir() / "tests/parity/tfjs_reference.js").string() +
                        " " + model_dir(model).string() + " " + std::to_string(size);
  for (const auto& image : images) command += " " + image.string();
  auto result = run_command(command + " 2>&1");
  finch::test::require(result.exit_code == 0,
                       "TensorFlow.js reference failed (run `make deps`): " + result.output);
  const auto last_line = result.output.substr(result.output.rfind('\n', result.output.size() - 2) +
                                              1);  // after TF.js' banner
  return nlohmann::json::parse(last_line);
}

// `count` images (TF.js' pure-JavaScript backend takes ~10 s per InceptionV3 forward).
void expect_same_as_tensorflow_js(const std::string& model, int size, unsigned count) {
  SCOPED_TRACE(model);
  finch::test::TempDir dir;
  std::vector<fs::path> pngs, raws;
  std::string images;
  for (unsigned i = 0; i < count; ++i) {
    pngs.push_back(dir / ("image" + std::to_string(i) + ".png"));
    raws.push_back(dir / ("image" + std::to_string(i) + ".rgb"));
    write_image(pngs.back(), raws.back(), size, i);
    images += " " + pngs.back().string();
  }
  const auto expected = tfjs_reference(model, size, raws);

  const std::string cli = finch::test::cli_path().string();
  const fs::path file = dir / "model.safetensors";
  finch::test::write_text(dir / "classes.txt", "drawing\nhentai\nneutral\nporn\nsexy\n");
  // nsfwjs feeds x / 255: mean 0, std 1 (finch's default for Keras files is x / 127.5 - 1).
  auto imported = run_command(cli + " import --arch " + model + " --weights " +
                              (model_dir(model) / "model.json").string() + " --classes " +
                              (dir / "classes.txt").string() + " --mean 0,0,0 --std 1,1,1 --out " +
                              file.string() + " 2>&1");
  ASSERT_EQ(imported.exit_code, 0) << imported.output;
  EXPECT_CONTAINS(imported.output, "+ linear head [256, 128] -> 5 outputs");
  EXPECT_CONTAINS(imported.output, "input " + std::to_string(size) + " px");

  auto predicted = run_command(cli + " predict --json --threads 1 --topk 5 --model " +
                               file.string() + images + " 2>/dev/null");
  ASSERT_EQ(predicted.exit_code, 0) << predicted.output;
  std::istringstream lines(predicted.output);
  size_t row = 0;
  for (std::string line; std::getline(lines, line); ++row) {
    ASSERT_LT(row, count) << predicted.output;
    const auto record = nlohmann::json::parse(line);
    ASSERT_EQ(record["path"], pngs[row].string());
    const auto& probs = expected["probs"][row];
    for (const auto& entry : record["topk"])
      EXPECT_NEAR(entry["prob"].get<double>(), probs[entry["index"].get<int>()].get<double>(), 1e-5)
          << entry.dump();
    int best = 0;
    for (int c = 1; c < 5; ++c)
      if (probs[c].get<double>() > probs[best].get<double>()) best = c;
    EXPECT_EQ(record["topk"][0]["index"], best);
  }
  EXPECT_EQ(row, count);

  // Pooled features: finch embed writes them L2-normalised.
  auto embedded = run_command(cli + " embed --threads 1 --model " + file.string() + images +
                              " --out " + (dir / "embeddings.safetensors").string() + " 2>&1");
  ASSERT_EQ(embedded.exit_code, 0) << embedded.output;
  auto tensors = finch::io::read_safetensors(dir / "embeddings.safetensors").tensors;
  torch::Tensor ours;
  for (const auto& [name, tensor] : tensors)
    if (name == "embeddings") ours = tensor;
  ASSERT_TRUE(ours.defined());
  std::vector<float> flat;
  for (const auto& r : expected["features"])
    for (const auto& v : r) flat.push_back(v.get<float>());
  torch::Tensor theirs = torch::tensor(flat).view({static_cast<int64_t>(count), -1});
  theirs = theirs / theirs.norm(2, 1, true);
  ASSERT_EQ(ours.sizes(), theirs.sizes());
  EXPECT_LT((ours - theirs).abs().max().item<double>(), 1e-5);

  // The exported graph (Keras pooling or padding, the hidden layers) in ONNX Runtime, on x / 255.
  auto exported = run_command(cli + " export --format onnx --model " + file.string() + " --out " +
                              (dir / "model.onnx").string() + " 2>&1");
  ASSERT_EQ(exported.exit_code, 0) << exported.output;
  std::ifstream raw(raws[0], std::ios::binary);
  std::vector<uint8_t> pixels(static_cast<size_t>(size) * size * 3);
  raw.read(reinterpret_cast<char*>(pixels.data()), static_cast<std::streamsize>(pixels.size()));
  torch::Tensor input = torch::from_blob(pixels.data(), {1, size, size, 3}, torch::kUInt8)
                            .permute({0, 3, 1, 2})
                            .to(torch::kFloat32)
                            .div(255)
                            .contiguous();
  const fs::path input_file = dir / "input.f32";
  std::ofstream(input_file, std::ios::binary)
      .write(static_cast<const char*>(input.data_ptr()),
             static_cast<std::streamsize>(input.numel() * sizeof(float)));
  auto ort =
      run_command("NODE_PATH=" + std::string(FINCH_NPM_DIR) + "/node_modules node " +
                  (finch::test::source_dir() / "tests/parity/onnx_runtime_reference.js").string() +
                  " " + (dir / "model.onnx").string() + " " + input_file.string() + " 1 3 " +
                  std::to_string(size) + " " + std::to_string(size) + " 2>&1");
  ASSERT_EQ(ort.exit_code, 0) << ort.output;
  const auto logits = nlohmann::json::parse(ort.output)["logits"][0].get<std::vector<float>>();
  torch::Tensor probs = torch::softmax(torch::tensor(logits), 0);
  for (int c = 0; c < 5; ++c)
    EXPECT_NEAR(probs[c].item<double>(), expected["probs"][0][c].get<double>(), 1e-5) << c;
}

}  // namespace

TEST(ImportTfjs, NsfwjsMobileNetV2PredictsLikeTensorFlowJs) {
  require_models();
  expect_same_as_tensorflow_js("mobilenet_v2", 224, 2);
}

TEST(ImportTfjs, NsfwjsInceptionV3PredictsLikeTensorFlowJs) {
  require_models();
  expect_same_as_tensorflow_js("inception_v3", 299, 1);
}

TEST(ImportTfjs, PretrainedBackboneInARecipeAndArchitectureMismatch) {
  require_models();
  finch::test::TempDir dir;
  finch::test::make_pattern_imagefolder(dir / "data", 2, 4, 32);
  const std::string cli = finch::test::cli_path().string();
  const std::string weights = (model_dir("mobilenet_v2") / "model.json").string();
  auto mismatch = run_command(cli + " import --arch inception_v3 --weights " + weights + " --out " +
                              (dir / "x.safetensors").string() + " 2>&1");
  EXPECT_NE(mismatch.exit_code, 0);
  EXPECT_CONTAINS(mismatch.output, "is a Keras mobilenet_v2, not --arch inception_v3");

  finch::test::write_text(dir / "recipe.yaml", R"(data: {format: imagefolder, root: )" +
                                                   (dir / "data").string() +
                                                   R"(, val_fraction: 0.25}
model: {backbone: mobilenet_v2, head: linear, pretrained: )" +
                                                   weights + R"(}
train: {epochs: 1, batch_size: 4, progress: none}
)");
  auto trained = run_command(cli + " train --config " + (dir / "recipe.yaml").string() + " --out " +
                             (dir / "run").string() + " 2>&1");
  ASSERT_EQ(trained.exit_code, 0) << trained.output;
  // Every backbone tensor loads; the 5-class classifier and the hidden layers do not fit a
  // 2-class linear head, and the recipe is told how to compute as Keras does.
  EXPECT_CONTAINS(trained.output, weights + ": loaded 312 tensors");
  EXPECT_CONTAINS(trained.output, "set model.tf_padding: true");
}
