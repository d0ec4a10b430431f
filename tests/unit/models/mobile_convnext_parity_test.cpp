// MobileNetV2/V3, EfficientNet and ConvNeXt against torchvision 0.14: the same weights
// (torchvision's names, loaded strictly through the pretrained-weights path) give the same
// stage maps and logits in eval mode; an inference copy (BatchNorm folded, channels-last)
// gives the same logits; a training step has finite gradients everywhere; and every variant's
// names and shapes are torchvision's.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "finch/io/safetensors.h"
#include "finch/models/inference.h"
#include "finch/models/model.h"
#include "finch/models/pretrained.h"
#include "finch/models/registry.h"
#include "parity_helpers.h"
#include "test_support.h"

namespace fm = finch::models;

namespace {

using finch::test::relative_diff;
using finch::test::weights_of;

using finch::test::kTolerance;

fm::ModelSpec spec_of(const std::string& arch) {
  return {{"backbone", arch}, {"head", "linear"}, {"num_classes", 1000}};
}

// Stage maps, logits, the stage description and an inference copy against torchvision's
// output for the same weights; prints the largest differences.
void expect_matches_torchvision(const std::string& arch, int size, bool folds) {
  finch::test::TempDir dir;
  const auto file = dir / "ref.safetensors";
  finch::test::run_python_reference("backbone_reference.py",
                                    arch + " " + std::to_string(size) + " " + file.string());
  auto ref = finch::io::read_safetensors(file);
  auto model = fm::build_classifier(spec_of(arch));
  auto report = fm::load_pretrained(model, weights_of(ref, "model."), file.string(), true);
  EXPECT_EQ(report.loaded.size(), fm::state_dict(*model).size());
  model->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor input = ref.find("input");
  auto& backbone = *model->backbone();
  auto features = backbone.forward_features(input);
  const auto channels = backbone.stage_channels();
  ASSERT_EQ(features.stages.size(), channels.size()) << arch;
  ASSERT_EQ(backbone.stage_prefixes().size(), channels.size()) << arch;
  double worst_stage = 0;
  for (size_t i = 0; i < features.stages.size(); ++i) {
    torch::Tensor expected = ref.find("stage." + std::to_string(i));
    ASSERT_TRUE(expected.defined()) << arch << " stage " << i;
    ASSERT_EQ(features.stages[i].sizes(), expected.sizes()) << arch << " stage " << i;
    EXPECT_EQ(features.stages[i].size(1), channels[i]) << arch << " stage " << i;
    const double diff = relative_diff(features.stages[i], expected);
    EXPECT_LT(diff, kTolerance) << arch << " stage " << i;
    worst_stage = std::max(worst_stage, diff);
  }
  EXPECT_FALSE(ref.find("stage." + std::to_string(features.stages.size())).defined())
      << "stage count";
  EXPECT_EQ(features.stages.back().size(1), backbone.num_features());
  EXPECT_EQ(features.stages.back().size(3) * backbone.output_stride(), size);
  EXPECT_EQ(backbone.embed(features).size(1), backbone.embedding_dim());

  auto out = model->forward(input);
  torch::Tensor expected = ref.find("output");
  ASSERT_EQ(out.logits.sizes(), expected.sizes());
  const double logit_diff = relative_diff(out.logits, expected);
  EXPECT_LT(logit_diff, kTolerance) << arch;
  EXPECT_TRUE(out.logits.argmax(1).equal(expected.argmax(1))) << arch;

  // Inference copy: BatchNorm folded into the convolutions where the family has BN,
  // channels-last weights and input.
  fm::InferenceOptions options;
  auto copy = fm::optimize_for_inference(spec_of(arch), model, options);
  size_t batch_norms = 0;
  for (const auto& module : copy->modules())
    batch_norms += module->as<torch::nn::BatchNorm2d>() != nullptr;
  if (folds) {
    EXPECT_EQ(batch_norms, 0u) << arch << ": BatchNorms left after folding";
  }
  const torch::Tensor prepared = fm::prepare_inference_input(input, options);
  // The stage maps too: logits of random-weight models are small, so a folding error shows
  // far more clearly in the maps than in the logits.
  auto fast_features = copy->backbone()->forward_features(prepared);
  ASSERT_EQ(fast_features.stages.size(), features.stages.size());
  double copy_diff = 0;
  for (size_t i = 0; i < features.stages.size(); ++i)
    copy_diff = std::max(copy_diff, relative_diff(fast_features.stages[i], features.stages[i]));
  torch::Tensor fast = copy->forward(prepared).logits;
  copy_diff = std::max(copy_diff, relative_diff(fast, out.logits));
  EXPECT_LT(copy_diff, kTolerance) << arch << " inference copy";
  EXPECT_TRUE(fast.argmax(1).equal(out.logits.argmax(1))) << arch << " inference copy";
  std::cout << arch << " @" << size << " px: stage diff " << worst_stage << ", logit diff "
            << logit_diff << ", inference copy diff " << copy_diff << "\n";
}

// Every parameter of the backbone belongs to a stage, except the layers after the last one
// (MobileNetV3's and ConvNeXt's classifier.0).
void expect_prefixes_cover_parameters(const std::string& arch, const fm::BackboneImpl& backbone) {
  const auto stages = backbone.stage_prefixes();
  for (const auto& item : backbone.named_parameters()) {
    bool covered = item.key().rfind("classifier.", 0) == 0;
    for (const auto& stage : stages)
      for (const auto& prefix : stage) covered = covered || item.key().rfind(prefix + ".", 0) == 0;
    EXPECT_TRUE(covered) << arch << ": " << item.key();
  }
}

}  // namespace

TEST(MobileConvNeXtParity, MobileNetV2) { expect_matches_torchvision("mobilenet_v2", 64, true); }
TEST(MobileConvNeXtParity, MobileNetV3Small) {
  expect_matches_torchvision("mobilenet_v3_small", 64, true);
}
TEST(MobileConvNeXtParity, EfficientNetB0) {
  expect_matches_torchvision("efficientnet_b0", 64, true);
}
TEST(MobileConvNeXtParity, ConvNeXtTiny) { expect_matches_torchvision("convnext_tiny", 64, false); }

// Training mode (batch statistics, stochastic depth, in-place activations after BatchNorm):
// one forward and backward pass reaches every parameter with a finite gradient.
TEST(MobileConvNeXtParity, TrainingStepGivesFiniteGradients) {
  for (const std::string arch :
       {"efficientnet_b0", "mobilenet_v2", "mobilenet_v3_small", "convnext_tiny"}) {
    SCOPED_TRACE(arch);
    torch::manual_seed(0);
    auto model = fm::build_classifier({{"backbone", arch}, {"head", "linear"}, {"num_classes", 5}});
    model->train();
    auto out = model->forward(torch::randn({2, 3, 64, 64}));
    torch::nn::functional::cross_entropy(out.logits, torch::tensor({1, 3})).backward();
    for (const auto& item : model->named_parameters()) {
      const torch::Tensor& grad = item.value().grad();
      ASSERT_TRUE(grad.defined()) << item.key();
      EXPECT_TRUE(torch::isfinite(grad).all().item<bool>()) << item.key();
    }
  }
}

// Stochastic depth in torchvision's row mode: a batch of identical images gives different rows
// in training (each sample drops its own residual branches; batch mode would keep the rows
// equal), identical rows in eval, and MobileNetV3 (no stochastic depth) identical rows always.
// BatchNorms run on running statistics measured on one random batch: batch statistics of
// identical rows (variance 0) would amplify rounding differences between rows, and the
// initial statistics (0 and 1) let the signal vanish in these depthwise networks.
TEST(MobileConvNeXtParity, StochasticDepthDropsRowsInTrainingOnly) {
  for (const auto& [arch, drops] : std::vector<std::pair<std::string, bool>>{
           {"efficientnet_b0", true}, {"convnext_tiny", true}, {"mobilenet_v3_small", false}}) {
    SCOPED_TRACE(arch);
    torch::manual_seed(0);
    auto model = fm::build_classifier({{"backbone", arch}, {"head", "linear"}, {"num_classes", 5}});
    std::vector<torch::nn::BatchNorm2dImpl*> norms;
    for (auto& module : model->modules()) {
      if (auto* bn = module->as<torch::nn::BatchNorm2d>()) norms.push_back(bn);
    }
    torch::NoGradGuard no_grad;
    model->train();
    for (auto* bn : norms) bn->options.momentum(1.0);  // running statistics := this batch's
    model->forward(torch::randn({8, 3, 32, 32}));
    for (auto* bn : norms) bn->eval();
    // ConvNeXt's residual branches start scaled by 1e-6: make dropping them visible.
    for (auto& item : model->named_parameters())
      if (item.key().find("layer_scale") != std::string::npos) item.value().fill_(1.0);

    const torch::Tensor batch = torch::randn({1, 3, 32, 32}).expand({8, 3, 32, 32}).contiguous();
    auto relative_row_spread = [&] {
      torch::Tensor e = model->forward(batch).embedding;
      return (e - e[0]).abs().max().item<double>() / e.abs().max().item<double>();
    };
    if (drops) {
      EXPECT_GT(relative_row_spread(), 1e-2);
    } else {
      EXPECT_LT(relative_row_spread(), 1e-5);
    }
    model->eval();
    EXPECT_LT(relative_row_spread(), 1e-5);
  }
}

// Every registered variant has exactly torchvision's tensor names and shapes (a strict load
// of a state dict with those names and shapes, values irrelevant, succeeds) and its norms'
// eps and momentum.
TEST(MobileConvNeXtParity, EveryVariantHasTorchvisionNamesShapesAndNorms) {
  const std::vector<std::string> archs = {
      "mobilenet_v2",    "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0",
      "efficientnet_b1", "efficientnet_b2",    "efficientnet_b3",    "efficientnet_b4",
      "efficientnet_b5", "efficientnet_b6",    "efficientnet_b7",    "convnext_tiny",
      "convnext_small",  "convnext_base"};
  finch::test::TempDir dir;
  const auto file = dir / "shapes.json";
  std::string args = file.string();
  for (const auto& arch : archs) args += " " + arch;
  finch::test::run_python_reference("state_dict_shapes.py", args);
  std::ifstream in(file);
  const auto reference = nlohmann::json::parse(in);
  for (const auto& arch : archs) {
    SCOPED_TRACE(arch);
    fm::StateDict weights;
    for (const auto& entry : reference.at(arch).at("tensors")) {
      // One zero broadcast to the shape: no memory per tensor.
      weights.emplace_back(entry[0].get<std::string>(),
                           torch::zeros({}).expand(entry[1].get<std::vector<int64_t>>()));
    }
    auto model = fm::build_classifier(spec_of(arch));
    EXPECT_NO_THROW(fm::load_pretrained(model, weights, arch, /*strict=*/true));
    EXPECT_EQ(weights.size(), fm::state_dict(*model).size());
    auto& backbone = *model->backbone();
    expect_prefixes_cover_parameters(arch, backbone);
    EXPECT_EQ(backbone.output_stride(), 32);

    std::map<std::string, std::shared_ptr<torch::nn::Module>> modules;
    for (const auto& item : backbone.named_modules("", /*include_self=*/false))
      modules.emplace(item.key(), item.value());
    size_t norms = 0;
    for (const auto& entry : reference.at(arch).at("norms")) {
      const std::string name = entry[0].get<std::string>();
      ASSERT_TRUE(modules.count(name)) << name;
      const auto& module = modules.at(name);
      if (const auto* bn = module->as<torch::nn::BatchNorm2d>()) {
        EXPECT_DOUBLE_EQ(bn->options.eps(), entry[1].get<double>()) << name;
        ASSERT_TRUE(bn->options.momentum().has_value()) << name;
        EXPECT_DOUBLE_EQ(*bn->options.momentum(), entry[2].get<double>()) << name;
      } else if (const auto* ln = module->as<torch::nn::LayerNorm>()) {
        EXPECT_DOUBLE_EQ(ln->options.eps(), entry[1].get<double>()) << name;
      } else {
        ADD_FAILURE() << name << " is not a norm layer";
      }
      ++norms;
    }
    size_t ours = 0;
    for (const auto& [name, module] : modules)
      ours += module->as<torch::nn::BatchNorm2d>() || module->as<torch::nn::LayerNorm>();
    EXPECT_EQ(ours, norms);
  }
}
