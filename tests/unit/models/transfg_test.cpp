// TransFG (the transfg head, model.vit.patch_stride and the contrastive loss) against
// tests/parity/transfg_reference.py, which re-implements the authors' part selection on
// torchvision's ViT-B/16 at 64 px with the same random weights (loaded strictly): the same
// selected tokens, class-token rollout, embedding and logits, with torchvision's patches and with
// TransFG's overlapping ones (stride 12, the 64 px weights' position embedding resized on load).
// Then the contrastive loss and its gradient against the Python formula, the errors, finite
// gradients in training, inference copies, the attention maps for `finch explain`, and a run
// through the trainer.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "finch/core/config.h"
#include "finch/core/error.h"
#include "finch/explain/cam.h"
#include "finch/io/safetensors.h"
#include "finch/models/backbones/vit.h"
#include "finch/models/inference.h"
#include "finch/models/model.h"
#include "finch/models/pretrained.h"
#include "finch/models/registry.h"
#include "finch/train/losses.h"
#include "finch/train/trainer.h"
#include "parity_helpers.h"
#include "test_support.h"

namespace fm = finch::models;
namespace ft = finch::train;
namespace fs = std::filesystem;

namespace {

using finch::test::weights_of;

// Same oneDNN kernels as PyTorch: differences come from summation order only.
using finch::test::kTolerance;

// Largest |a - b| relative to max(1e-30, max |b|): the reference's scale, whatever it is
// (the rollout's entries are far below 1), unlike the parity tests' max(1, max |b|).
double scale_relative_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).abs().max().item<double>() / std::max(1e-30, b.abs().max().item<double>());
}

fm::ModelSpec vit_spec(const std::string& head, int64_t stride) {
  fm::ModelSpec spec = {
      {"backbone", "vit_b_16"}, {"head", head}, {"input_size", 64}, {"num_classes", 10}};
  if (stride != 0) spec["vit"] = {{"patch_stride", stride}};
  return spec;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The transfg head and a linear head on the same torchvision weights with `stride` px between
// 16 px patches, against the reference. Prints the largest differences.
void expect_matches_reference(int64_t stride, int64_t grid) {
  const auto start = std::chrono::steady_clock::now();
  finch::test::TempDir dir;
  const auto file = dir / "ref.safetensors";
  finch::test::run_python_reference("transfg_reference.py",
                                    "model " + std::to_string(stride) + " " + file.string());
  const auto ref = finch::io::read_safetensors(file);
  const auto weights = weights_of(ref, "model.");
  const torch::Tensor input = ref.find("input");
  torch::NoGradGuard no_grad;

  auto model = fm::build_classifier(vit_spec("transfg", stride));
  auto report = fm::load_pretrained(model, weights, file.string(), /*strict=*/true);
  EXPECT_EQ(report.loaded.size(), fm::state_dict(*model).size());
  // The 64 px weights have a 4 x 4 position embedding: resized for overlapping patches only.
  EXPECT_EQ(report.adapted.size(), grid == 4 ? 0u : 1u) << report.summary();
  EXPECT_EQ(model->backbone()->output_stride(), stride);
  model->eval();
  auto out = model->forward(input);

  ASSERT_EQ(out.attention.sizes(), (std::vector<int64_t>{2, 12, grid, grid}));
  const torch::Tensor rollout = out.attention.flatten(2);
  const torch::Tensor selected = rollout.argmax(2) + 1;
  EXPECT_TRUE(selected.equal(ref.find("selected")))
      << "finch " << selected << "\nreference " << ref.find("selected");
  const double rollout_diff = scale_relative_diff(rollout, ref.find("rollout"));
  EXPECT_LT(rollout_diff, kTolerance);
  const double embedding_diff = scale_relative_diff(out.embedding, ref.find("embedding"));
  EXPECT_LT(embedding_diff, kTolerance);
  const torch::Tensor expected = ref.find("logits");
  const double logits_diff = scale_relative_diff(out.logits, expected);
  EXPECT_LT(logits_diff, kTolerance);
  EXPECT_TRUE(out.logits.argmax(1).equal(expected.argmax(1)));

  // The same backbone with torchvision's classifier: the plain ViT path with these patches.
  auto plain = fm::build_classifier(vit_spec("linear", stride));
  fm::load_pretrained(plain, weights, file.string(), /*strict=*/true);
  plain->eval();
  auto features = plain->backbone()->forward_features(input);
  ASSERT_EQ(features.stages.back().sizes(), (std::vector<int64_t>{2, 768, grid, grid}));
  const double stage_diff = scale_relative_diff(features.stages.back(), ref.find("stage.3"));
  EXPECT_LT(stage_diff, kTolerance);
  const double vit_diff = scale_relative_diff(plain->forward(input).logits, ref.find("vit_logits"));
  EXPECT_LT(vit_diff, kTolerance);
  std::printf(
      "stride %lld: rollout %.2e, embedding %.2e, logits %.2e; plain ViT: last stage %.2e, "
      "logits %.2e (%.1f s)\n",
      static_cast<long long>(stride), rollout_diff, embedding_diff, logits_diff, stage_diff,
      vit_diff, seconds_since(start));
}

}  // namespace

TEST(TransFGParity, TorchvisionPatches) { expect_matches_reference(16, 4); }
// TransFG's 16 px patches every 12 px: (64 - 16) / 12 + 1 = 5 per side.
TEST(TransFGParity, OverlappingPatchesStride12) { expect_matches_reference(12, 5); }

TEST(TransFGParity, ContrastiveLossAndGradient) {
  finch::test::TempDir dir;
  const auto file = dir / "ref.safetensors";
  finch::test::run_python_reference("transfg_reference.py", "contrastive " + file.string());
  const auto ref = finch::io::read_safetensors(file);
  torch::Tensor z = ref.find("embeddings").clone().set_requires_grad(true);
  const torch::Tensor labels = ref.find("labels");
  torch::Tensor loss = ft::contrastive_loss(z, labels, 0.4);
  loss.backward();
  const double expected = ref.find("loss").item<double>();
  EXPECT_NEAR(loss.item<double>(), expected, 1e-6 * std::max(1.0, expected));
  const double grad_diff = (z.grad() - ref.find("grad")).abs().max().item<double>();
  EXPECT_LT(grad_diff, 1e-6);
  std::printf("contrastive loss %.6f: difference %.2e, gradient %.2e\n", expected,
              std::abs(loss.item<double>() - expected), grad_diff);
  // The authors' code divides the same sum by B instead of B^2.
  EXPECT_NEAR(ref.find("code_loss").item<double>(), expected * z.size(0), 1e-5);
  // Identical same-class embeddings and orthogonal other classes cost nothing.
  const torch::Tensor eye = torch::eye(4);
  const torch::Tensor twice = torch::cat({eye, eye});
  const torch::Tensor classes = torch::tensor({0, 1, 2, 3, 0, 1, 2, 3}, torch::kLong);
  EXPECT_NEAR(ft::contrastive_loss(twice, classes, 0.4).item<double>(), 0.0, 1e-7);
  // One pair of different classes at cosine 1: (1 - 0.4) for (i, j) and (j, i), over B^2 = 4.
  EXPECT_NEAR(ft::contrastive_loss(torch::ones({2, 3}), torch::tensor({0, 1}, torch::kLong), 0.4)
                  .item<double>(),
              2 * 0.6 / 4, 1e-6);
}

TEST(TransFG, ContrastiveIsARegisteredLoss) {
  finch::Config c = finch::Config::defaults();
  c.set("train.losses", "[{type: cross_entropy}, {type: contrastive}]");
  auto terms = ft::parse_losses(c);
  ASSERT_EQ(terms.size(), 2u);
  EXPECT_EQ(terms[1].type, "contrastive");
  EXPECT_EQ(terms[1].margin, 0.4);  // the paper's alpha
  c.set("train.losses", "[{type: contrastive, margin: 0.2, weight: 2}]");
  terms = ft::parse_losses(c);
  EXPECT_EQ(terms[0].margin, 0.2);
  EXPECT_EQ(terms[0].weight, 2);
  const auto names = ft::loss_names();
  EXPECT_NE(std::find(names.begin(), names.end(), "contrastive"), names.end());
}

TEST(TransFG, NeedsAVisionTransformer) {
  const std::string message = finch::test::error_of([] {
    fm::build_classifier({{"backbone", "resnet18"}, {"head", "transfg"}, {"num_classes", 5}});
  });
  EXPECT_CONTAINS(message, "needs model.backbone vit_b_16, vit_b_32 or vit_l_16");
  EXPECT_CONTAINS(message, "'resnet18'");
}

// Training mode: every parameter (the backbone's last layer and encoder.ln through the selected
// tokens) gets a finite gradient from cross-entropy + contrastive loss.
TEST(TransFG, TrainingGradientsAreFinite) {
  const auto start = std::chrono::steady_clock::now();
  torch::manual_seed(0);
  auto model = fm::build_classifier(vit_spec("transfg", 12));
  EXPECT_EQ(model->head()->default_clip_grad_norm(), 1.0);
  EXPECT_EQ(model->head()->embedding_dim(), 768);
  EXPECT_FALSE(model->head()->uses_embedding_only());
  model->train();
  auto out = model->forward(torch::randn({4, 3, 64, 64}));
  EXPECT_EQ(out.logits.sizes(), (std::vector<int64_t>{4, 10}));
  EXPECT_EQ(out.embedding.sizes(), (std::vector<int64_t>{4, 768}));
  const torch::Tensor labels = torch::tensor({1, 3, 1, 0}, torch::kLong);
  (torch::nn::functional::cross_entropy(out.logits, labels) +
   ft::contrastive_loss(out.embedding, labels))
      .backward();
  for (const auto& item : model->named_parameters()) {
    ASSERT_TRUE(item.value().grad().defined()) << item.key();
    EXPECT_TRUE(torch::isfinite(item.value().grad()).all().item<bool>()) << item.key();
    EXPECT_GT(item.value().grad().abs().sum().item<double>(), 0) << item.key();
  }
  std::printf("training step (%.1f s)\n", seconds_since(start));
}

TEST(TransFG, PartSelectionNeedsTheLatestForward) {
  auto model = fm::build_classifier(vit_spec("transfg", 0));
  auto vit = std::dynamic_pointer_cast<fm::VisionTransformerImpl>(model->backbone());
  ASSERT_TRUE(vit);
  EXPECT_TRUE(vit->keeping_last_layer_input());
  EXPECT_FALSE(vit->recording_attention());
  model->eval();
  torch::NoGradGuard no_grad;
  auto first = vit->forward_features(torch::randn({1, 3, 64, 64}));
  const auto& kept = vit->last_layer_input(first);
  EXPECT_EQ(kept.tokens.sizes(), (std::vector<int64_t>{1, 17, 768}));
  EXPECT_EQ(kept.attention.size(), 11u);  // layers 1..L-1
  EXPECT_TRUE(vit->attention().empty());  // record_attention stays off
  vit->forward_features(torch::randn({1, 3, 64, 64}));
  EXPECT_CONTAINS(finch::test::error_of([&] { model->head()->forward_head(first, *vit); }),
                  "latest forward_features");
  // A plain ViT keeps nothing.
  auto plain = fm::build_classifier(vit_spec("linear", 0));
  auto plain_vit = std::dynamic_pointer_cast<fm::VisionTransformerImpl>(plain->backbone());
  EXPECT_FALSE(plain_vit->keeping_last_layer_input());
  plain->eval();
  auto features = plain_vit->forward_features(torch::randn({1, 3, 64, 64}));
  EXPECT_CONTAINS(finch::test::error_of([&] { plain_vit->last_layer_input(features); }),
                  "keep_last_layer_input");
}

TEST(TransFG, PatchStrideRules) {
  auto error = [](int64_t input, int64_t stride) {
    return finch::test::error_of([&] {
      fm::ModelSpec spec = vit_spec("linear", stride);
      spec["input_size"] = input;
      fm::build_classifier(spec);
    });
  };
  EXPECT_CONTAINS(error(64, 20), "patch_stride must be between 1 and the patch size 16");
  EXPECT_CONTAINS(error(64, -1), "patch_stride must be between 1 and the patch size 16");
  // 16 + k * 12: 196 and 208 around 200.
  EXPECT_CONTAINS(error(200, 12), "the patch size 16 plus a multiple of model.vit.patch_stride 12");
  EXPECT_CONTAINS(error(200, 12), "196 or 208");
  EXPECT_CONTAINS(error(200, 0), "multiple of the patch size 16");  // unchanged without overlap

  auto model = fm::build_classifier(vit_spec("linear", 12));
  model->eval();
  torch::NoGradGuard no_grad;
  const std::string message = finch::test::error_of([&] {
    model->forward(torch::randn({1, 3, 70, 64}));
  });
  EXPECT_CONTAINS(message, "plus a multiple of model.vit.patch_stride 12");
  EXPECT_CONTAINS(message, "height 64 or 76");
  // TransFG's 448 px: a 37 x 37 grid, other valid sizes interpolate the position embedding.
  auto vit = std::dynamic_pointer_cast<fm::VisionTransformerImpl>(model->backbone());
  EXPECT_EQ(vit->grid_side(448), 37);
  auto features = vit->forward_features(torch::randn({1, 3, 76, 100}));
  EXPECT_EQ(features.stages.back().sizes(), (std::vector<int64_t>{1, 768, 6, 8}));
}

// finch's inference copies are rebuilt from the spec: the part selection comes with them.
TEST(TransFG, InferenceCopyMatches) {
  torch::manual_seed(0);
  const fm::ModelSpec spec = vit_spec("transfg", 12);
  auto model = fm::build_classifier(spec);
  fm::InferenceOptions options;
  auto fast = fm::optimize_for_inference(spec, model, options);
  model->eval();
  const auto images = torch::randn({2, 3, 64, 64});
  c10::InferenceMode guard;
  const auto expected = model->forward(images);
  const auto got = fast->forward(fm::prepare_inference_input(images, options));
  EXPECT_LT(scale_relative_diff(got.logits, expected.logits), kTolerance);
  EXPECT_TRUE(got.attention.flatten(2).argmax(2).equal(expected.attention.flatten(2).argmax(2)));
}

// `finch explain --method attention`: one map per image from the heads' rollout rows.
TEST(TransFG, AttentionMapsForExplain) {
  torch::manual_seed(0);
  auto model = fm::build_classifier(vit_spec("transfg", 12));
  finch::explain::CamOptions options;
  options.method = finch::explain::CamMethod::kAttention;
  auto result = finch::explain::compute_cam(model, torch::randn({2, 3, 64, 64}), options);
  EXPECT_EQ(result.cam.sizes(), (std::vector<int64_t>{2, 5, 5}));
  EXPECT_TRUE(torch::isfinite(result.cam).all().item<bool>());
  EXPECT_NEAR(result.cam.amax({1, 2}).min().item<double>(), 1.0, 1e-6);
}

// The recipe's pieces through the unchanged trainer: the model.vit section, the head and the
// contrastive loss, with ViT-B/16 on 32 px images (16 px patches every 8 px: 3 x 3).
TEST(TransFG, TrainsThroughTheTrainer) {
  const auto start = std::chrono::steady_clock::now();
  finch::test::TempDir dir;
  finch::test::make_pattern_imagefolder(dir / "data", 4, 4, 32);
  finch::Config c = finch::Config::from_yaml(R"(
seed: 0
threads: 2
data: {format: imagefolder, workers: 1, val_fraction: 0.25, train_transforms: [],
       eval_transforms: []}
model: {backbone: vit_b_16, head: transfg, input_size: 32, vit: {patch_stride: 8}}
train: {epochs: 1, batch_size: 4, eval_batch_size: 4, progress: none, max_steps_per_epoch: 2,
        losses: [{type: cross_entropy}, {type: contrastive, weight: 4}]}
optim: {name: sgd, lr: 0.01, momentum: 0.9, clip_grad_norm: auto}
)",
                                             "transfg");
  c.set("data.root", (dir / "data").string());
  auto summary = ft::run_training(c, dir / "run", false);
  EXPECT_EQ(summary.epochs_completed, 1);
  EXPECT_TRUE(fs::exists(dir / "run" / "best.safetensors"));
  std::printf("trainer run (%.1f s)\n", seconds_since(start));
}
