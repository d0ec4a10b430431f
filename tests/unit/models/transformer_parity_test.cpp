// The Vision and Swin Transformer backbones against torchvision 0.14: the same weights
// (torchvision's names, loaded strictly through the pretrained-weights path) must give the
// same stage maps, logits and (ViT) attention probabilities in eval mode, including a ViT
// whose position embedding is interpolated for another input size and a Swin whose maps are
// padded to whole windows. Then one training step's gradients and the structure finch relies
// on (stage prefixes for train.freeze, messages).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "finch/core/error.h"
#include "finch/explain/cam.h"
#include "finch/io/safetensors.h"
#include "finch/models/backbones/vit.h"
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

// Same oneDNN kernels as PyTorch: differences come from summation order only.
using finch::test::kTolerance;
constexpr double kAttentionTolerance = 1e-5;  // absolute, on probabilities

fm::Classifier make(const fm::ModelSpec& extra, int64_t classes = 5) {
  fm::ModelSpec spec = {{"head", "linear"}, {"num_classes", classes}};
  spec.update(extra);
  return fm::build_classifier(spec);
}

std::shared_ptr<fm::VisionTransformerImpl> vit_of(const fm::Classifier& model) {
  return std::dynamic_pointer_cast<fm::VisionTransformerImpl>(model->backbone());
}

struct Case {
  std::string arch;
  int weights_size;  // ViT: torchvision's image_size of the written weights (finch's input_size)
  int input_size;
};

// Prints the largest differences seen so that the margin to the tolerance is on record.
void expect_matches_torchvision(const Case& c) {
  const auto start = std::chrono::steady_clock::now();
  finch::test::TempDir dir;
  const auto file = dir / "ref.safetensors";
  finch::test::run_python_reference("transformer_reference.py",
                                    c.arch + " " + std::to_string(c.weights_size) + " " +
                                        std::to_string(c.input_size) + " " + file.string());
  auto ref = finch::io::read_safetensors(file);
  auto model = make({{"backbone", c.arch}, {"input_size", c.weights_size}}, 1000);
  auto report = fm::load_pretrained(model, weights_of(ref, "model."), file.string(), true);
  EXPECT_EQ(report.loaded.size(), fm::state_dict(*model).size());
  auto vit = vit_of(model);
  if (vit) vit->record_attention(true);
  model->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor input = ref.find("input");
  auto features = model->backbone()->forward_features(input);
  double worst_stage = 0;
  ASSERT_EQ(features.stages.size(), 4u) << c.arch;
  for (size_t i = 0; i < features.stages.size(); ++i) {
    torch::Tensor expected = ref.find("stage." + std::to_string(i));
    ASSERT_TRUE(expected.defined()) << c.arch << " stage " << i;
    ASSERT_EQ(features.stages[i].sizes(), expected.sizes()) << c.arch << " stage " << i;
    const double diff = relative_diff(features.stages[i], expected);
    worst_stage = std::max(worst_stage, diff);
    EXPECT_LT(diff, kTolerance) << c.arch << " stage " << i;
  }
  EXPECT_FALSE(ref.find("stage.4").defined()) << "stage count";
  double worst_attention = 0;
  if (vit) {
    const auto& attention = vit->attention();
    ASSERT_EQ(attention.size(), static_cast<size_t>(vit->options().num_layers));
    for (size_t i = 0; i < attention.size(); ++i) {
      torch::Tensor expected = ref.find("attention." + std::to_string(i));
      ASSERT_TRUE(expected.defined()) << "attention " << i;
      ASSERT_EQ(attention[i].sizes(), expected.sizes()) << "attention " << i;
      const double diff = (attention[i] - expected).abs().max().item<double>();
      worst_attention = std::max(worst_attention, diff);
      EXPECT_LT(diff, kAttentionTolerance) << c.arch << " attention of layer " << i;
    }
  }
  torch::Tensor out = model->forward(input).logits;
  torch::Tensor expected = ref.find("output");
  ASSERT_EQ(out.sizes(), expected.sizes());
  const double logits_diff = relative_diff(out, expected);
  EXPECT_LT(logits_diff, kTolerance) << c.arch;
  EXPECT_TRUE(out.argmax(1).equal(expected.argmax(1))) << c.arch;
  if (vit) {
    // A second eval forward (the interpolated embedding from the cache) gives the same logits.
    EXPECT_TRUE(model->forward(input).logits.equal(out)) << c.arch;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("%s %d->%d px: stages %.2e, logits %.2e", c.arch.c_str(), c.weights_size,
              c.input_size, worst_stage, logits_diff);
  if (vit) std::printf(", attention %.2e", worst_attention);
  std::printf(" (%.1f s)\n", seconds);
}

// Training mode (stochastic depth in Swin, autograd through the interpolated position
// embedding in ViT): every parameter gets a finite gradient.
void expect_finite_gradients(const std::string& arch, int size) {
  torch::manual_seed(0);
  auto model = make({{"backbone", arch}});
  model->train();
  auto out = model->forward(torch::randn({2, 3, size, size}));
  EXPECT_EQ(out.logits.sizes(), (std::vector<int64_t>{2, 5}));
  torch::nn::functional::cross_entropy(out.logits, torch::tensor({1, 3}, torch::kLong)).backward();
  for (const auto& item : model->named_parameters()) {
    ASSERT_TRUE(item.value().grad().defined()) << arch << ": " << item.key();
    EXPECT_TRUE(torch::isfinite(item.value().grad()).all().item<bool>())
        << arch << ": " << item.key();
  }
}

// Every backbone parameter belongs to exactly one stage, as train.freeze needs.
void expect_prefixes_cover(const std::string& arch) {
  auto model = make({{"backbone", arch}});
  const auto stages = model->backbone()->stage_prefixes();
  EXPECT_EQ(stages.size(), 4u);
  for (const auto& item : model->backbone()->named_parameters()) {
    int owners = 0;
    for (const auto& stage : stages)
      for (const auto& prefix : stage)
        owners += item.key() == prefix || item.key().rfind(prefix + ".", 0) == 0;
    EXPECT_EQ(owners, 1) << arch << ": " << item.key();
  }
}

}  // namespace

TEST(TransformerParity, VitB32) { expect_matches_torchvision({"vit_b_32", 224, 224}); }
// torchvision allows image_size=64 for ViT-B/16 (a 4 x 4 grid): finch's model.input_size.
TEST(TransformerParity, VitB16At64) { expect_matches_torchvision({"vit_b_16", 64, 64}); }
// Weights for 224 px on 288 px images against torchvision's interpolate_embeddings.
TEST(TransformerParity, VitB32InterpolatedPositionEmbedding) {
  expect_matches_torchvision({"vit_b_32", 224, 288});
}
TEST(TransformerParity, SwinT) { expect_matches_torchvision({"swin_t", 224, 224}); }
// 100 px: 25 x 25 patches padded to 28 for the windows, odd sides in the patch merging, and a
// 4 x 4 last stage smaller than the window (no shift there).
TEST(TransformerParity, SwinTPaddedWindows) { expect_matches_torchvision({"swin_t", 224, 100}); }

TEST(TransformerTraining, VitB32At64) { expect_finite_gradients("vit_b_32", 64); }
TEST(TransformerTraining, SwinTAt64) { expect_finite_gradients("swin_t", 64); }

TEST(Transformers, AllAreRegistered) {
  const auto names = fm::backbone_names();
  for (const char* n : {"vit_b_16", "vit_b_32", "vit_l_16", "swin_t", "swin_s", "swin_b"})
    EXPECT_NE(std::find(names.begin(), names.end(), n), names.end()) << n;
}

TEST(Transformers, StagePrefixesCoverTheParameters) {
  expect_prefixes_cover("vit_b_32");
  expect_prefixes_cover("swin_t");
}

TEST(Transformers, VitStagesAndAttentionRecording) {
  auto model = make({{"backbone", "vit_b_32"}});
  auto vit = vit_of(model);
  ASSERT_TRUE(vit);
  EXPECT_EQ(vit->torchvision_classifier(), "heads.head");
  EXPECT_EQ(vit->output_stride(), 32);
  model->eval();
  torch::NoGradGuard no_grad;
  EXPECT_FALSE(vit->recording_attention());
  // Not square: a 7 x 9 grid from the 7 x 7 position embedding.
  auto features = vit->forward_features(torch::randn({1, 3, 224, 288}));
  EXPECT_TRUE(vit->attention().empty());
  ASSERT_EQ(features.stages.size(), 4u);
  for (const auto& stage : features.stages)
    EXPECT_EQ(stage.sizes(), (std::vector<int64_t>{1, 768, 7, 9}));
  EXPECT_EQ(vit->embed(features).sizes(), (std::vector<int64_t>{1, 768}));
  vit->record_attention(true);
  vit->forward_features(torch::randn({1, 3, 64, 64}));
  ASSERT_EQ(vit->attention().size(), 12u);
  EXPECT_EQ(vit->attention()[0].sizes(), (std::vector<int64_t>{1, 12, 5, 5}));
  // embed() of stale Features is an error, not another image's class token.
  EXPECT_CONTAINS(finch::test::error_of([&] { vit->embed(features); }), "latest forward_features");
}

TEST(Transformers, VitRejectsSidesThatAreNotMultiplesOfThePatch) {
  auto model = make({{"backbone", "vit_b_32"}});
  model->eval();
  torch::NoGradGuard no_grad;
  const std::string message = finch::test::error_of([&] {
    model->forward(torch::randn({1, 3, 100, 64}));
  });
  EXPECT_CONTAINS(message, "multiples of the patch size 32");
  EXPECT_CONTAINS(message, "96 or 128");
  EXPECT_CONTAINS(finch::test::error_of([] {
                    make({{"backbone", "vit_b_16"}, {"input_size", 200}});
                  }),
                  "multiple of the patch size 16");
}

// The eval-mode cache of interpolated position embeddings follows writes to pos_embedding.
TEST(Transformers, VitPositionCacheFollowsTheWeights) {
  auto model = make({{"backbone", "vit_b_32"}});
  model->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor input = torch::randn({1, 3, 96, 96});
  const torch::Tensor before = model->forward(input).logits;
  EXPECT_TRUE(model->forward(input).logits.equal(before));
  model->named_parameters()["backbone.encoder.pos_embedding"].add_(0.5);
  EXPECT_FALSE(model->forward(input).logits.equal(before));
}

TEST(Transformers, SwinStages) {
  auto model = make({{"backbone", "swin_t"}});
  EXPECT_EQ(model->backbone()->torchvision_classifier(), "head");
  EXPECT_EQ(model->backbone()->output_stride(), 32);
  EXPECT_EQ(model->backbone()->stage_channels(), (std::vector<int64_t>{96, 192, 384, 768}));
  model->eval();
  torch::NoGradGuard no_grad;
  auto features = model->backbone()->forward_features(torch::randn({1, 3, 64, 96}));
  ASSERT_EQ(features.stages.size(), 4u);
  EXPECT_EQ(features.stages[0].sizes(), (std::vector<int64_t>{1, 96, 16, 24}));
  EXPECT_EQ(features.stages[3].sizes(), (std::vector<int64_t>{1, 768, 2, 3}));
}

// finch's inference copies (channels-last input and weights, nothing to fold) keep the logits.
TEST(Transformers, InferenceCopiesMatch) {
  for (const std::string arch : {"vit_b_32", "swin_t"}) {
    torch::manual_seed(0);
    const fm::ModelSpec spec = {{"backbone", arch}, {"head", "linear"}, {"num_classes", 5}};
    auto model = fm::build_classifier(spec);
    fm::InferenceOptions options;
    auto fast = fm::optimize_for_inference(spec, model, options);
    model->eval();
    const auto images = torch::randn({2, 3, 96, 96});
    c10::InferenceMode guard;
    const torch::Tensor expected = model->forward(images).logits;
    const torch::Tensor got = fast->forward(fm::prepare_inference_input(images, options)).logits;
    EXPECT_LT(relative_diff(got, expected), kTolerance) << arch;
  }
}

// ViT's class token does not see the final patch tokens, but the maps of stages 1-3 feed the
// later layers: Grad-CAM works there.
TEST(Transformers, VitGradCamAtAnInnerStage) {
  torch::manual_seed(0);
  auto model = make({{"backbone", "vit_b_32"}});
  finch::explain::CamOptions options;
  options.layer = 3;
  auto result = finch::explain::compute_cam(model, torch::randn({1, 3, 96, 96}), options);
  EXPECT_EQ(result.cam.sizes(), (std::vector<int64_t>{1, 3, 3}));
  EXPECT_TRUE(torch::isfinite(result.cam).all().item<bool>());
}
