// finch's backbones against torchvision itself: the same weights (torchvision's names, loaded
// through the pretrained-weights path in strict mode) must give the same stage maps and logits
// in eval mode, and one SGD step of resnet18 the same loss, gradients and updated weights.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <iostream>
#include <utility>

#include "finch/core/config.h"
#include "finch/eval/precision.h"
#include "finch/io/safetensors.h"
#include "finch/models/inference.h"
#include "finch/models/int8.h"
#include "finch/models/model.h"
#include "finch/models/model_file.h"
#include "finch/models/pretrained.h"
#include "finch/train/mixed_precision.h"
#include "finch/train/optim.h"
#include "parity_helpers.h"
#include "test_support.h"

namespace fm = finch::models;

namespace {

using finch::test::relative_diff;
using finch::test::weights_of;

// Largest |a - b| relative to max |b| (for gradients, which are far below 1).
double scaled_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).abs().max().item<double>() / b.abs().max().item<double>();
}

// Same oneDNN kernels as PyTorch: differences come from summation order only, so 1e-4 of
// the output scale is generous for float32.
using finch::test::kTolerance;

void expect_matches_torchvision(const std::string& arch, int size) {
  finch::test::TempDir dir;
  const auto file = dir / "ref.safetensors";
  finch::test::run_python_reference("backbone_reference.py",
                                    arch + " " + std::to_string(size) + " " + file.string());
  auto ref = finch::io::read_safetensors(file);
  auto model =
      fm::build_classifier({{"backbone", arch}, {"head", "linear"}, {"num_classes", 1000}});
  // Strict: every torchvision tensor has a finch tensor of the same shape and vice versa.
  auto report = fm::load_pretrained(model, weights_of(ref, "model."), file.string(), true);
  EXPECT_EQ(report.loaded.size(), fm::state_dict(*model).size());
  model->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor input = ref.find("input");
  auto features = model->backbone()->forward_features(input);
  size_t checked = 0;
  for (size_t i = 0; i < features.stages.size(); ++i) {
    torch::Tensor expected = ref.find("stage." + std::to_string(i));
    ASSERT_TRUE(expected.defined()) << arch << " stage " << i;
    ASSERT_EQ(features.stages[i].sizes(), expected.sizes()) << arch << " stage " << i;
    EXPECT_LT(relative_diff(features.stages[i], expected), kTolerance) << arch << " stage " << i;
    ++checked;
  }
  EXPECT_FALSE(ref.find("stage." + std::to_string(checked)).defined()) << "stage count";
  torch::Tensor out = model->forward(input).logits;
  torch::Tensor expected = ref.find("output");
  ASSERT_EQ(out.sizes(), expected.sizes());
  EXPECT_LT(relative_diff(out, expected), kTolerance) << arch;
  EXPECT_TRUE(out.argmax(1).equal(expected.argmax(1))) << arch;
}

}  // namespace

TEST(TorchvisionParity, ResNet18) { expect_matches_torchvision("resnet18", 64); }
TEST(TorchvisionParity, ResNet50WithStageMaps) { expect_matches_torchvision("resnet50", 96); }
TEST(TorchvisionParity, ResNeXt50) { expect_matches_torchvision("resnext50_32x4d", 64); }
TEST(TorchvisionParity, Vgg16Bn) { expect_matches_torchvision("vgg16_bn", 64); }
TEST(TorchvisionParity, InceptionV3) { expect_matches_torchvision("inception_v3", 299); }

TEST(TorchvisionParity, Resnet18SgdStep) {
  finch::test::TempDir dir;
  const auto file = dir / "step.safetensors";
  finch::test::run_python_reference("train_step_reference.py", file.string());
  auto ref = finch::io::read_safetensors(file);
  auto model =
      fm::build_classifier({{"backbone", "resnet18"}, {"head", "linear"}, {"num_classes", 10}});
  fm::load_pretrained(model, weights_of(ref, "model."), file.string(), true);
  model->train();
  finch::Config config = finch::Config::defaults();
  config.set("optim.name", "sgd");
  config.set("optim.lr", "0.1");
  config.set("optim.momentum", "0.9");
  config.set("optim.nesterov", "false");
  config.set("optim.weight_decay", "0.0001");
  config.set("optim.decay_norm_and_bias", "true");  // torch.optim.SGD decays every parameter
  auto optim = finch::train::build_optimizer(config, model);
  torch::Tensor loss = torch::nn::functional::cross_entropy(
      model->forward(ref.find("input")).logits, ref.find("labels"));
  optim.optimizer->zero_grad();
  loss.backward();
  EXPECT_NEAR(loss.item<double>(), ref.find("loss").item<double>(), 1e-5);
  auto params = model->named_parameters();
  EXPECT_LT(scaled_diff(params["backbone.conv1.weight"].grad(), ref.find("grad.conv1.weight")),
            kTolerance);
  EXPECT_LT(scaled_diff(params["head.fc.weight"].grad(), ref.find("grad.fc.weight")), kTolerance);
  optim.optimizer->step();
  auto after = model->named_parameters();
  auto buffers = model->named_buffers();
  EXPECT_LT(relative_diff(after["backbone.conv1.weight"], ref.find("after.conv1.weight")),
            kTolerance);
  EXPECT_LT(relative_diff(after["head.fc.weight"], ref.find("after.fc.weight")), kTolerance);
  EXPECT_LT(relative_diff(buffers["backbone.bn1.running_mean"], ref.find("after.bn1.running_mean")),
            kTolerance);
  EXPECT_LT(relative_diff(buffers["backbone.layer4.1.bn2.running_var"],
                          ref.find("after.layer4.1.bn2.running_var")),
            kTolerance);
}

// train.precision: bf16-mixed against torch.autocast("cpu", torch.bfloat16): the same loss and
// gradients within bf16's rounding (8 significant bits, so 2% of the gradient scale), while
// the fp32 computation is measurably further from the reference (the check can fail).
TEST(TorchvisionParity, Resnet18Bf16AutocastStep) {
  finch::test::TempDir dir;
  const auto file = dir / "step.safetensors";
  finch::test::run_python_reference("train_step_reference.py", file.string() + " bf16-autocast");
  auto ref = finch::io::read_safetensors(file);
  auto model =
      fm::build_classifier({{"backbone", "resnet18"}, {"head", "linear"}, {"num_classes", 10}});
  fm::load_pretrained(model, weights_of(ref, "model."), file.string(), true);
  model->train();
  const auto gradients = [&](bool autocast) {
    fm::ModelOutput output;
    {
      finch::train::AutocastScope scope(autocast, torch::kCPU);
      output = model->forward(ref.find("input"));
      EXPECT_EQ(output.logits.scalar_type(), autocast ? torch::kBFloat16 : torch::kFloat);
    }
    output = finch::train::outputs_to_fp32(std::move(output));
    torch::Tensor loss = torch::nn::functional::cross_entropy(output.logits, ref.find("labels"));
    model->zero_grad();
    loss.backward();
    auto params = model->named_parameters();
    return std::make_tuple(loss.item<double>(), params["backbone.conv1.weight"].grad().clone(),
                           params["head.fc.weight"].grad().clone());
  };
  const auto [loss, conv1, fc] = gradients(true);
  // Weights and gradients stay fp32 (the master copy); only the arithmetic is bf16.
  EXPECT_EQ(conv1.scalar_type(), torch::kFloat);
  EXPECT_EQ(model->named_parameters()["backbone.conv1.weight"].scalar_type(), torch::kFloat);
  EXPECT_NEAR(loss, ref.find("loss").item<double>(), 1e-2);
  constexpr double kBf16Tolerance = 2e-2;
  const double conv1_diff = scaled_diff(conv1, ref.find("grad.conv1.weight"));
  EXPECT_LT(conv1_diff, kBf16Tolerance);
  EXPECT_LT(scaled_diff(fc, ref.find("grad.fc.weight")), kBf16Tolerance);
  // Outside the scope nothing is cast any more.
  const auto [loss32, conv1_32, fc32] = gradients(false);
  const double fp32_diff = scaled_diff(conv1_32, ref.find("grad.conv1.weight"));
  std::printf("conv1 gradient vs torch.autocast: bf16-mixed %.3g, fp32 %.3g (scaled max diff)\n",
              conv1_diff, fp32_diff);
  EXPECT_GT(fp32_diff, 4 * conv1_diff)
      << "fp32 gradients should differ from bf16 autocast ones by more than finch's bf16 does";
}

// finch's int8 ResNet against PyTorch's own post-training static quantization (FX
// prepare/convert on the oneDNN engine, with the observers finch implements): the same
// calibration images must give the same quantized backbone, stage by stage. FX folds the
// BatchNorms in float32 and finch in float64; one weight rounded differently is enough for
// the integers to drift apart layer after layer, so the reference folds as finch does first.
TEST(TorchvisionParity, ResNet18Int8MatchesPyTorchFxQuantization) {
  finch::test::TempDir dir;
  const auto file = dir / "int8.safetensors";
  std::cout << finch::test::run_python_reference("int8_reference.py",
                                                 "resnet18 64 " + file.string());
  auto ref = finch::io::read_safetensors(file);
  fm::LoadedModel loaded;
  loaded.info.arch = {{"backbone", "resnet18"}, {"head", "linear"}, {"num_classes", 1000}};
  loaded.model = fm::build_classifier(loaded.info.arch);
  fm::load_pretrained(loaded.model, weights_of(ref, "model."), file.string(), true);
  loaded.model->eval();
  bool given = false;
  const nlohmann::json calibration = finch::eval::calibrate_int8(
      loaded,
      [&]() -> std::optional<std::pair<torch::Tensor, torch::Tensor>> {
        if (std::exchange(given, true)) return std::nullopt;
        return std::make_pair(ref.find("calibration"), torch::Tensor());
      },
      0);
  EXPECT_EQ(calibration["images"], 4);
  // The backbone quantized as optimize_for_inference does, but asked for every stage map (a
  // linear head would get the last one only).
  fm::InferenceOptions folded_fp32;
  folded_fp32.channels_last = false;
  folded_fp32.onednn_layout = false;
  auto int8 = fm::optimize_for_inference(loaded.info.arch, loaded.model, folded_fp32);
  auto ranges = fm::int8::Calibration::from_json(calibration["ranges"]);
  ASSERT_TRUE(int8->backbone()->quantize_int8(ranges, /*every_stage=*/true));
  c10::InferenceMode guard;
  const auto stages = int8->backbone()->forward_features(ref.find("input")).stages;
  ASSERT_EQ(stages.size(), 4u);
  for (int k = 1; k <= 4; ++k) {
    const torch::Tensor& got = stages[k - 1];
    const torch::Tensor expected = ref.find(fmt::format("int8.stage{}", k));
    const double quantum = ref.find(fmt::format("int8.scale{}", k)).item<double>();
    ASSERT_EQ(got.sizes(), expected.sizes());
    const torch::Tensor quanta = (got - expected).abs() / quantum;
    const double identical = quanta.lt(0.5).to(torch::kFloat).mean().item<double>();
    std::cout << "stage " << k << ": int8 vs FX max " << quanta.max().item<double>() << " quanta, "
              << 100 * identical << "% identical\n";
    // The reference starts from the same folded float32 weights, so the integers agree:
    // at most one quantum apart (a rounding tie), and almost all identical.
    EXPECT_LE(quanta.max().item<double>(), 1.01) << "stage " << k;
    EXPECT_GT(identical, 0.999) << "stage " << k;
    // And far from the float backbone (it really is quantized).
    const torch::Tensor fp32 = ref.find(fmt::format("fp32.stage{}", k));
    EXPECT_GT((got - fp32).abs().max().item<double>(), quantum) << "stage " << k;
  }
}
