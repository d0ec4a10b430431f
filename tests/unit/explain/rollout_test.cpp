// Attention rollout (explain/cam.h) on known matrices and on a ViT, and Grad-CAM's default
// stage on a ViT (its last stage does not reach the logits).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "finch/core/error.h"
#include "finch/explain/cam.h"
#include "finch/models/model.h"

namespace fe = finch::explain;
namespace fm = finch::models;

TEST(AttentionRollout, MatchesTheDefinitionOnTwoLayers) {
  torch::manual_seed(0);
  const auto a1 = torch::softmax(torch::randn({2, 3, 4, 4}), -1);
  const auto a2 = torch::softmax(torch::randn({2, 3, 4, 4}), -1);
  auto step = [](const torch::Tensor& a) {
    torch::Tensor m = 0.5 * a.mean(1) + 0.5 * torch::eye(4).unsqueeze(0);
    return m / m.sum(-1, true);
  };
  const torch::Tensor expected = torch::bmm(step(a2), step(a1));
  const torch::Tensor got = fe::attention_rollout({a1, a2});
  EXPECT_TRUE(torch::allclose(got, expected, 1e-6, 1e-7));
  // Rows stay distributions.
  EXPECT_TRUE(torch::allclose(got.sum(-1), torch::ones({2, 4}), 1e-5, 1e-6));
}

TEST(AttentionRollout, UniformAttentionGivesAFlatMap) {
  const auto uniform = torch::full({1, 2, 5, 5}, 0.2);
  const torch::Tensor r = fe::attention_rollout({uniform, uniform, uniform});
  const torch::Tensor row = r.select(1, 0).slice(1, 1);  // class token -> 4 patches
  EXPECT_TRUE(torch::allclose(row, row[0][0].expand_as(row)));
}

TEST(AttentionRollout, ViTMapsCoverThePatchGrid) {
  torch::manual_seed(1);
  auto model = fm::build_classifier(
      {{"backbone", "vit_b_16"}, {"head", "linear"}, {"num_classes", 3}, {"input_size", 64}});
  const auto images = torch::randn({2, 3, 64, 64});
  auto result = fe::compute_cam(model, images, {fe::CamMethod::kRollout, 0, -1});
  ASSERT_EQ(result.cam.sizes(), (std::vector<int64_t>{2, 4, 4}));
  EXPECT_GE(result.cam.min().item<float>(), 0.0f);
  EXPECT_LE(result.cam.max().item<float>(), 1.0f);
  EXPECT_EQ(result.logits.sizes(), (std::vector<int64_t>{2, 3}));
}

TEST(AttentionRollout, OtherBackbonesGetAClearError) {
  auto model = fm::build_classifier(
      {{"backbone", "resnet20"}, {"head", "linear"}, {"num_classes", 3}, {"width", 8}});
  EXPECT_THROW(
      fe::compute_cam(model, torch::randn({1, 3, 16, 16}), {fe::CamMethod::kRollout, 0, -1}),
      finch::Error);
}

TEST(GradCamOnViT, DefaultsToTheDeepestStageThatReachesTheLogits) {
  torch::manual_seed(2);
  auto model = fm::build_classifier(
      {{"backbone", "vit_b_16"}, {"head", "linear"}, {"num_classes", 3}, {"input_size", 64}});
  const auto images = torch::randn({1, 3, 64, 64});
  auto result = fe::compute_cam(model, images, {fe::CamMethod::kGradCam, 0, -1});
  EXPECT_EQ(result.cam.sizes(), (std::vector<int64_t>{1, 4, 4}));
  // Asking for the last stage explicitly is refused with the reason.
  EXPECT_THROW(fe::compute_cam(model, images, {fe::CamMethod::kGradCam, 4, -1}), finch::Error);
}
