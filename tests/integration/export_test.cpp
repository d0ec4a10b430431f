// `finch export`: ONNX graphs checked by running them in ONNX Runtime (onnxruntime-node,
// installed by scripts/install-npm.sh) against finch's own inference, and model cards.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "finch/core/atomic_file.h"
#include "finch/eval/session.h"
#include "finch/export/card.h"
#include "finch/export/onnx.h"
#include "finch/models/model_file.h"
#include "test_support.h"

namespace fm = finch::models;
namespace fx = finch::exporting;
using finch::test::run_command;

namespace {

fm::LoadedModel random_model(const fm::ModelSpec& spec, int64_t input_size) {
  torch::manual_seed(7);
  fm::LoadedModel loaded;
  loaded.model = fm::build_classifier(spec);
  torch::NoGradGuard no_grad;
  // Random BatchNorm statistics (as a trained model has): a wrong fold must show.
  for (auto& module : loaded.model->modules())
    if (auto* bn = module->as<torch::nn::BatchNorm2dImpl>()) {
      bn->running_mean.uniform_(-0.5, 0.5);
      bn->running_var.uniform_(0.5, 2.0);
      bn->weight.uniform_(0.5, 1.5);
      bn->bias.uniform_(-0.2, 0.2);
    }
  for (auto& module : loaded.model->modules())
    if (auto* ln = module->as<torch::nn::LayerNormImpl>()) {
      ln->weight.uniform_(0.5, 1.5);
      ln->bias.uniform_(-0.2, 0.2);
    }
  // Attention blocks start as the identity (gamma 0): open their gates so they count.
  for (auto& p : loaded.model->named_parameters())
    if (p.key().size() >= 5 && p.key().substr(p.key().size() - 5) == "gamma") p.value().fill_(0.8);
  loaded.model->eval();
  loaded.info.arch = spec;
  for (int64_t c = 0; c < spec["num_classes"].get<int64_t>(); ++c)
    loaded.info.classes.push_back("class" + std::to_string(c));
  loaded.info.preprocess.input_size = input_size;
  loaded.info.preprocess.eval_transforms =
      nlohmann::json::array({{{"type", "resize"}, {"size", {input_size, input_size}}}});
  return loaded;
}

// Runs `onnx` in ONNX Runtime on `batch`; returns its JSON output (logits, embedding).
nlohmann::json run_onnx_runtime(const std::filesystem::path& onnx, const torch::Tensor& batch,
                                const std::filesystem::path& scratch) {
  const auto input = scratch / "input.f32";
  torch::Tensor x = batch.contiguous();
  finch::write_file_atomic(
      input, std::string(static_cast<const char*>(x.data_ptr()), x.numel() * sizeof(float)));
  const std::string script =
      (finch::test::source_dir() / "tests" / "parity" / "onnx_runtime_reference.js").string();
  auto result = run_command(fmt::format("NODE_PATH={}/node_modules node {} {} {} {} {} {} {}",
                                        FINCH_NPM_DIR, script, onnx.string(), input.string(),
                                        x.size(0), x.size(1), x.size(2), x.size(3)));
  finch::test::require(result.exit_code == 0,
                       "ONNX Runtime (run `make deps` to install onnxruntime-node into " +
                           std::string(FINCH_NPM_DIR) + "): " + result.output);
  return nlohmann::json::parse(result.output);
}

torch::Tensor rows(const nlohmann::json& j) {
  std::vector<torch::Tensor> out;
  for (const auto& row : j) out.push_back(torch::tensor(row.get<std::vector<float>>()));
  return torch::stack(out);
}

struct Case {
  std::string name;
  fm::ModelSpec spec;
  int64_t size;
  bool dynamic_batch;
};

}  // namespace

// Every backbone family and head the exporter writes (the mobile family with and without
// model.tf_padding, at even and odd sizes): ONNX Runtime's logits and embeddings equal finch's
// inference session's within 1e-4 of their scale, with the same top-1.
TEST(ExportOnnx, OnnxRuntimeReproducesFinchOnEveryExportedArchitecture) {
  finch::test::TempDir dir("finch-export");
  const std::vector<Case> cases = {
      {"resnet20", {{"backbone", "resnet20"}, {"head", "linear"}, {"num_classes", 10}}, 28, true},
      {"resnet18", {{"backbone", "resnet18"}, {"head", "linear"}, {"num_classes", 7}}, 64, false},
      {"resnet50 cosine",
       {{"backbone", "resnet50"}, {"head", "cosine"}, {"num_classes", 5}, {"cosine_scale", 16.0}},
       64,
       true},
      {"resnext50",
       {{"backbone", "resnext50_32x4d"}, {"head", "linear"}, {"num_classes", 3}},
       64,
       true},
      {"vgg11_bn gap",
       {{"backbone", "vgg11_bn"}, {"head", "linear"}, {"num_classes", 4}, {"vgg_fc", false}},
       64,
       true},
      {"resnet18+se",
       {{"backbone", "resnet18"},
        {"head", "linear"},
        {"num_classes", 3},
        {"attention", {{"type", "se"}, {"stages", {2, 4}}, {"reduction", 16}}}},
       64,
       true},
      {"resnet50+cbam",
       {{"backbone", "resnet50"},
        {"head", "linear"},
        {"num_classes", 3},
        {"attention", {{"type", "cbam"}, {"stages", {3, 4}}, {"reduction", 16}}}},
       64,
       false},
      {"vgg11_bn+se gap",
       {{"backbone", "vgg11_bn"},
        {"head", "linear"},
        {"num_classes", 3},
        {"vgg_fc", false},
        {"attention", {{"type", "se"}, {"stages", {5}}}}},
       64,
       true},
      {"inception_v3",
       {{"backbone", "inception_v3"}, {"head", "linear"}, {"num_classes", 3}, {"aux_logits", true}},
       107,
       true},
      {"inception_v3 keras",  // imported TF.js models: Keras pooling, hidden Dense layers
       {{"backbone", "inception_v3"},
        {"head", "linear"},
        {"num_classes", 3},
        {"aux_logits", false},
        {"tf_padding", true},
        {"linear", {{"hidden", {32, 16}}}}},
       107,
       false},
      {"mobilenet_v2 keras+se",
       {{"backbone", "mobilenet_v2"},
        {"head", "linear"},
        {"num_classes", 4},
        {"tf_padding", true},
        {"linear", {{"hidden", {24}}}},
        {"attention", {{"type", "se"}, {"stages", {3}}}}},
       64,
       true},
      {"mobilenet_v2",
       {{"backbone", "mobilenet_v2"}, {"head", "linear"}, {"num_classes", 4}},
       57,
       false},
      {"mobilenet_v3_small",
       {{"backbone", "mobilenet_v3_small"}, {"head", "linear"}, {"num_classes", 5}},
       64,
       true},
      {"mobilenet_v3_large cbam",
       {{"backbone", "mobilenet_v3_large"},
        {"head", "cosine"},
        {"num_classes", 5},
        {"attention", {{"type", "cbam"}, {"stages", {-1}}}}},
       64,
       false},
      {"efficientnet_b0",
       {{"backbone", "efficientnet_b0"}, {"head", "linear"}, {"num_classes", 3}},
       64,
       true},
      {"resnet18 self_attention",
       {{"backbone", "resnet18"},
        {"head", "self_attention"},
        {"num_classes", 5},
        {"input_size", 64},
        {"self_attention", {{"dim", 64}, {"heads", 4}, {"layers", 2}, {"mlp_ratio", 2.0}}}},
       64,
       true},
      {"resnet18 bilinear",
       {{"backbone", "resnet18"},
        {"head", "bilinear"},
        {"num_classes", 4},
        {"bilinear", {{"type", "full"}, {"reduce", 0}}}},
       64,
       true},
      {"resnet20 bilinear reduce",
       {{"backbone", "resnet20"},
        {"head", "bilinear"},
        {"num_classes", 4},
        {"bilinear", {{"type", "full"}, {"reduce", 8}}}},
       28,
       true},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    fm::LoadedModel loaded = random_model(c.spec, c.size);
    std::string file = c.name;
    for (char& ch : file)
      if (ch == ' ' || ch == '+') ch = '_';
    const auto onnx = dir / (file + ".onnx");
    auto written = fx::export_onnx(loaded, onnx, {13, c.dynamic_batch});
    EXPECT_GT(written.nodes, 3);
    auto pre = nlohmann::json::parse(finch::read_file(written.preprocess));
    EXPECT_EQ(pre["input_size"], c.size);
    EXPECT_EQ(pre["classes"].size(), loaded.info.classes.size());

    const int64_t batch = c.dynamic_batch ? 3 : 1;
    torch::manual_seed(3);
    torch::Tensor images = torch::randn({batch, 3, c.size, c.size});
    finch::eval::InferenceSession session(std::move(loaded));
    auto want = session.forward(images);
    auto got = run_onnx_runtime(onnx, images, dir.path());
    EXPECT_EQ(got["input_names"], nlohmann::json::array({"images"}));
    torch::Tensor logits = rows(got["logits"]), embedding = rows(got["embedding"]);
    ASSERT_EQ(logits.sizes(), want.logits.sizes());
    const double scale = want.logits.abs().max().item<double>();
    EXPECT_LT((logits - want.logits).abs().max().item<double>(), 1e-4 * std::max(1.0, scale));
    EXPECT_TRUE(torch::equal(logits.argmax(1), want.logits.argmax(1)));
    const double escale = want.embedding.abs().max().item<double>();
    EXPECT_LT((embedding - want.embedding).abs().max().item<double>(),
              1e-4 * std::max(1.0, escale));
  }
}

TEST(ExportOnnx, RefusesWhatItCannotWriteByName) {
  finch::test::TempDir dir("finch-export");
  auto error_for = [&](const fm::ModelSpec& spec, fx::OnnxOptions options = {}) {
    fm::LoadedModel loaded = random_model(spec, 64);
    return finch::test::error_of([&] { fx::export_onnx(loaded, dir / "m.onnx", options); });
  };
  EXPECT_NE(error_for({{"backbone", "resnet18"}, {"head", "wsdan"}, {"num_classes", 3}})
                .find("does not cover the wsdan head"),
            std::string::npos);
  EXPECT_NE(error_for({{"backbone", "resnet18"},
                       {"head", "bilinear"},
                       {"num_classes", 3},
                       {"bilinear", {{"type", "compact"}, {"dim", 64}}}})
                .find("compact bilinear"),
            std::string::npos);
  EXPECT_NE(error_for({{"backbone", "vgg11"}, {"head", "linear"}, {"num_classes", 3}})
                .find("multiple of 224"),
            std::string::npos);
  EXPECT_NE(
      error_for({{"backbone", "resnet18"}, {"head", "linear"}, {"num_classes", 3}}, {9, false})
          .find("opset"),
      std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(dir / "m.onnx"));
}

// The CLI on a trained model file: the graph and its preprocessing, then a card that reports
// the run's recipe and evaluation.
TEST(ExportCli, WritesOnnxAndAModelCardFromTheRunFolder) {
  finch::test::TempDir dir("finch-export-cli");
  const auto run = dir / "run";
  std::filesystem::create_directories(run);
  fm::LoadedModel loaded = random_model(
      {{"backbone", "resnet20"}, {"head", "linear"}, {"num_classes", 3}, {"width", 8}}, 16);
  loaded.info.training = {{"epoch", 4}, {"val_acc", 0.875}};
  fm::save_model_file(run / "best.safetensors", loaded.model, loaded.info);
  finch::test::write_text(run / "config.yaml", "seed: 1\ndata: {format: imagefolder}\n");
  finch::test::write_text(
      run / "test_metrics.json",
      R"({"top1": 0.75, "top5": 1.0, "mean_class_accuracy": 0.74, "num_samples": 30,
          "dataset": {"format": "imagefolder", "root": "/data", "split": "test"},
          "per_class": [{"class": "class0", "recall": 0.9}, {"class": "class2", "recall": 0.4}],
          "most_confused": [{"true": "class2", "predicted": "class1", "count": 5}]})");
  const std::string cli = finch::test::cli_path().string();
  const std::string model = (run / "best.safetensors").string();

  auto onnx = run_command(cli + " export -m " + model + " -o " + (dir / "m.onnx").string());
  ASSERT_EQ(onnx.exit_code, 0) << onnx.output;
  EXPECT_CONTAINS(onnx.output, "batch 1");
  EXPECT_TRUE(std::filesystem::exists(dir / "m.onnx.preprocess.json"));

  auto card =
      run_command(cli + " export -m " + model + " -f card -o " + (dir / "README.md").string());
  ASSERT_EQ(card.exit_code, 0) << card.output;
  const std::string md = finch::read_file(dir / "README.md");
  EXPECT_CONTAINS(md, "resnet20 + linear head, 3 classes");
  EXPECT_CONTAINS(md, "0: class0, 1: class1, 2: class2");
  EXPECT_CONTAINS(md, "| top1 | 75.00% |");
  EXPECT_CONTAINS(md, "val_acc: 0.875");
  EXPECT_CONTAINS(md, "data: {format: imagefolder}");
  EXPECT_CONTAINS(md, "Weakest classes in test_metrics.json: class2 (recall 40.00%)");
  EXPECT_CONTAINS(md, "class2 taken for class1 (5 times)");
  EXPECT_CONTAINS(md, "no open-set threshold is calibrated");

  auto bad = run_command(cli + " export -m " + model + " -f tflite -o x");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_CONTAINS(bad.output, "tflite");
}

// docs/registry.md is `finch list --markdown`, so the docs list exactly what is registered.
TEST(ListCli, DocsRegistryMatchesTheRegistries) {
  const std::string cli = finch::test::cli_path().string();
  auto result = run_command(cli + " list --markdown");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(result.output, finch::read_file(finch::test::source_dir() / "docs" / "registry.md"))
      << "regenerate with: build/finch list --markdown > docs/registry.md";
  for (const char* kind : {"## formats", "## backbones", "## heads", "## attention",
                           "## transforms", "## losses", "## optimizers", "## schedules"})
    EXPECT_CONTAINS(result.output, kind);
  auto json = nlohmann::json::parse(run_command(cli + " list heads --json").output);
  std::set<std::string> heads;
  for (const auto& head : json["heads"]) heads.insert(head["name"].get<std::string>());
  for (const char* name : {"linear", "cosine", "bilinear", "self_attention", "wsdan", "pim"})
    EXPECT_EQ(heads.count(name), 1u) << name;
  auto bad = run_command(cli + " list gadgets 2>&1");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_CONTAINS(bad.output, "nothing registered as 'gadgets' (kinds: attention, backbones");
  auto help = run_command(cli + " --help");
  EXPECT_CONTAINS(help.output, "schedules: constant, cosine, multistep, onecycle, step");
}
