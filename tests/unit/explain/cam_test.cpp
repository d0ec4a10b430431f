// Grad-CAM, Grad-CAM++ and attention maps: hand-computed cases for the numeric parts, and
// parity with a direct PyTorch computation (hooks on torchvision resnet18's layer4).
#include "finch/explain/cam.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "finch/io/safetensors.h"
#include "finch/models/model.h"
#include "finch/models/pretrained.h"
#include "test_support.h"

namespace fe = finch::explain;
namespace fm = finch::models;

TEST(GradCam, WeightsAreTheSpatialMeanOfTheGradients) {
  // Channel 0 = [[1,0],[0,1]] with gradient 1 everywhere (w0 = 1); channel 1 = [[0,2],[2,0]]
  // with gradient -0.5 everywhere (w1 = -0.5): 1*A0 - 0.5*A1 = [[1,-1],[-1,1]] -> ReLU.
  auto a = torch::tensor({1.f, 0.f, 0.f, 1.f, 0.f, 2.f, 2.f, 0.f}).view({1, 2, 2, 2});
  auto g = torch::tensor({1.f, 1.f, 1.f, 1.f, -.5f, -.5f, -.5f, -.5f}).view({1, 2, 2, 2});
  auto cam = fe::gradcam_map(a, g);
  EXPECT_TRUE(cam.allclose(torch::tensor({1.f, 0.f, 0.f, 1.f}).view({1, 2, 2}))) << cam;
}

TEST(GradCam, PlusPlusClosedFormAlpha) {
  // One channel A = [[1,2],[3,4]] (sum 10), g = [[1,0],[-1,2]]:
  // alpha = g^2 / (2 g^2 + 10 g^3) = 1/12, 0 (g = 0), -1/8, 4/88;
  // w = sum alpha * ReLU(g) = 1/12 + 2 * 4/88; cam = w * A.
  auto a = torch::tensor({1.f, 2.f, 3.f, 4.f}).view({1, 1, 2, 2});
  auto g = torch::tensor({1.f, 0.f, -1.f, 2.f}).view({1, 1, 2, 2});
  const double w = 1.0 / 12 + 2 * 4.0 / 88;
  auto cam = fe::gradcam_plus_plus_map(a, g);
  auto expected = torch::tensor({1.f, 2.f, 3.f, 4.f}).view({1, 2, 2}) * w;
  EXPECT_TRUE(cam.allclose(expected, 1e-5, 1e-6)) << cam;
}

TEST(GradCam, NormalizeIsMinMaxPerImageAndZeroForConstantMaps) {
  auto maps = torch::tensor({1.f, 3.f, 5.f, 9.f, 2.f, 2.f, 2.f, 2.f}).view({2, 2, 2});
  auto n = fe::normalize_maps(maps);
  EXPECT_TRUE(n[0].allclose(torch::tensor({0.f, .25f, .5f, 1.f}).view({2, 2})));
  EXPECT_EQ(n[1].abs().sum().item<float>(), 0.f);
}

TEST(GradCam, MethodNames) {
  EXPECT_EQ(fe::parse_cam_method("gradcam++"), fe::CamMethod::kGradCamPlusPlus);
  EXPECT_EQ(fe::cam_method_name(fe::parse_cam_method("attention")), "attention");
  EXPECT_CONTAINS(finch::test::error_of([] { fe::parse_cam_method("lime"); }), "lime");
}

namespace {

fm::StateDict weights_of(const finch::io::TensorFile& file, const std::string& prefix) {
  fm::StateDict out;
  for (const auto& [name, tensor] : file.tensors)
    if (name.rfind(prefix, 0) == 0) out.emplace_back(name.substr(prefix.size()), tensor);
  return out;
}

}  // namespace

TEST(GradCamParity, EqualsPyTorchHooksOnTorchvisionResnet18) {
  finch::test::TempDir dir;
  const auto file = dir / "gradcam.safetensors";
  finch::test::run_python_reference("gradcam_reference.py", "128 7 " + file.string());
  auto ref = finch::io::read_safetensors(file);
  auto model =
      fm::build_classifier({{"backbone", "resnet18"}, {"head", "linear"}, {"num_classes", 1000}});
  fm::load_pretrained(model, weights_of(ref, "model."), file.string(), true);
  model->train();  // compute_cam must switch to eval mode and restore this
  fe::CamOptions options;
  options.target = 7;
  auto result = fe::compute_cam(model, ref.find("input"), options);
  EXPECT_TRUE(model->is_training());
  const auto expected = ref.find("gradcam");
  ASSERT_EQ(result.cam.sizes(), expected.sizes());  // [2, 4, 4]
  EXPECT_LE((result.cam - expected).abs().max().item<double>(), 1e-4) << result.cam << "\n"
                                                                      << expected;
  EXPECT_GT(expected.std().item<double>(), 0.1);  // not a degenerate map
  EXPECT_LT((result.logits - ref.find("logits")).abs().max().item<double>(), 1e-3);
  EXPECT_TRUE(result.target.equal(ref.find("target")));
  // No parameter gradient is left behind.
  for (const auto& p : model->parameters()) ASSERT_FALSE(p.grad().defined());

  options.method = fe::CamMethod::kGradCamPlusPlus;
  auto plus = fe::compute_cam(model, ref.find("input"), options);
  EXPECT_LE((plus.cam - ref.find("gradcampp")).abs().max().item<double>(), 1e-4);
}

TEST(GradCam, EarlierLayerAndPredictedTargetAndErrors) {
  torch::manual_seed(0);
  auto model = fm::build_classifier(
      {{"backbone", "resnet20"}, {"head", "linear"}, {"num_classes", 3}, {"width", 4}});
  auto images = torch::randn({2, 3, 16, 16});
  fe::CamOptions options;
  options.layer = 2;  // resnet20 stages: 16, 8, 4 px at 16 px input
  auto result = fe::compute_cam(model, images, options);
  ASSERT_EQ(result.cam.sizes(), (std::vector<int64_t>{2, 8, 8}));
  EXPECT_TRUE(result.target.equal(result.logits.argmax(1)));
  EXPECT_GE(result.cam.min().item<float>(), 0.f);
  EXPECT_LE(result.cam.max().item<float>(), 1.f);
  options.layer = 9;
  EXPECT_CONTAINS(finch::test::error_of([&] { fe::compute_cam(model, images, options); }),
                  "stages 1..3");
  options.layer = 0;
  options.target = 5;
  EXPECT_CONTAINS(finch::test::error_of([&] { fe::compute_cam(model, images, options); }),
                  "3 classes");
  options.target = -1;
  options.method = fe::CamMethod::kAttention;
  EXPECT_CONTAINS(finch::test::error_of([&] { fe::compute_cam(model, images, options); }),
                  "no attention maps");
}

TEST(GradCam, AttentionMapsOfAWsdanHead) {
  torch::manual_seed(0);
  auto model = fm::build_classifier({{"backbone", "resnet20"},
                                     {"head", "wsdan"},
                                     {"num_classes", 3},
                                     {"width", 4},
                                     {"input_size", 16},
                                     {"wsdan", {{"parts", 4}}}});
  auto images = torch::randn({2, 3, 16, 16});
  fe::CamOptions options;
  options.method = fe::CamMethod::kAttention;
  auto result = fe::compute_cam(model, images, options);
  ASSERT_EQ(result.cam.dim(), 3);
  EXPECT_EQ(result.cam.size(0), 2);
  EXPECT_NEAR(result.cam.max().item<float>(), 1.f, 1e-6);
  // The same as averaging the head's maps by hand.
  torch::NoGradGuard no_grad;
  model->eval();
  auto features = model->backbone()->forward_features(images);
  auto out = model->head()->forward_head(features, *model->backbone());
  EXPECT_TRUE(result.cam.allclose(fe::normalize_maps(out.attention.mean(1)), 1e-5, 1e-6));
}
