#include "finch/models/inference.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "finch/bench/bench.h"
#include "finch/models/int8.h"
#include "finch/models/model.h"
#include "test_support.h"

namespace fm = finch::models;

namespace {

fm::ModelSpec spec_of(const std::string& backbone, int64_t classes) {
  return {{"backbone", backbone}, {"head", "linear"}, {"num_classes", classes}};
}

// Random BatchNorm statistics and affine parameters, as a trained model has: with the fresh
// (identity) ones a wrong fold would go unnoticed.
void randomise_batchnorms(fm::Classifier& model) {
  torch::NoGradGuard no_grad;
  for (auto& module : model->modules()) {
    if (auto* bn = module->as<torch::nn::BatchNorm2dImpl>()) {
      bn->running_mean.uniform_(-0.5, 0.5);
      bn->running_var.uniform_(0.5, 2.0);
      bn->weight.uniform_(0.5, 1.5);
      bn->bias.uniform_(-0.2, 0.2);
    }
  }
}

double max_relative_difference(const torch::Tensor& a, const torch::Tensor& b) {
  return ((a - b).abs().max() / b.abs().max()).item<double>();
}

int64_t count_batchnorms(fm::Classifier& model) {
  int64_t n = 0;
  for (auto& module : model->modules())
    if (module->as<torch::nn::BatchNorm2dImpl>()) ++n;
  return n;
}

}  // namespace

// Every ResNet flavour, with and without oneDNN-prepacked weights; ResNeXt's grouped
// convolutions keep dense weights and SE blocks rule the oneDNN path out altogether.
TEST(Inference, FoldedResNetLogitsEqualPlainEvalLogits) {
  for (const std::string backbone :
       {"resnet20", "resnet18", "resnet50", "resnext50_32x4d", "resnet18+se"})
    for (const bool onednn : {true, false}) {
      SCOPED_TRACE(backbone + (onednn ? " onednn" : " channels-last"));
      torch::manual_seed(1);
      auto spec = spec_of(backbone.substr(0, backbone.find('+')), 10);
      if (backbone.find("+se") != std::string::npos)
        spec["attention"] = {{"type", "se"}, {"stages", {2, 4}}};
      auto model = fm::build_classifier(spec);
      randomise_batchnorms(model);
      model->train();  // the source may still be training: the copy must not care
      const auto before = fm::state_dict(*model);
      const auto images = torch::randn({3, 3, 64, 64});

      fm::InferenceOptions options;  // fold + channels-last or oneDNN layout, fp32
      options.onednn_layout = onednn;
      auto fast = fm::optimize_for_inference(spec, model, options);
      EXPECT_EQ(count_batchnorms(fast), 0) << backbone;

      model->eval();
      torch::Tensor expected, got;
      {
        c10::InferenceMode guard;
        expected = model->forward(images).logits;
        got = fast->forward(fm::prepare_inference_input(images, options)).logits;
      }
      EXPECT_LT(max_relative_difference(got, expected), 1e-4) << backbone;

      // The source model keeps its names, values and BatchNorms.
      const auto after = fm::state_dict(*model);
      ASSERT_EQ(after.size(), before.size());
      for (size_t i = 0; i < after.size(); ++i) {
        EXPECT_EQ(after[i].first, before[i].first);
        EXPECT_TRUE(after[i].second.equal(before[i].second)) << after[i].first;
      }
      EXPECT_GT(count_batchnorms(model), 0);
    }
}

TEST(Inference, Bf16CopyIsCloseToFp32) {
  torch::manual_seed(2);
  const auto spec = spec_of("resnet18", 10);
  auto model = fm::build_classifier(spec);
  randomise_batchnorms(model);
  model->eval();
  fm::InferenceOptions options;
  options.dtype = torch::kBFloat16;
  auto fast = fm::optimize_for_inference(spec, model, options);
  const auto images = torch::randn({2, 3, 64, 64});
  c10::InferenceMode guard;
  auto expected = model->forward(images).logits;
  auto got = fast->forward(fm::prepare_inference_input(images, options)).logits.to(torch::kFloat);
  EXPECT_EQ(fast->forward(fm::prepare_inference_input(images, options)).logits.scalar_type(),
            torch::kBFloat16);
  EXPECT_LT(max_relative_difference(got, expected), 0.1);  // bf16 has 8 mantissa bits
}

namespace {

// The activation ranges of `spec`'s folded fp32 copy of `model` on `images` (what
// eval::calibrate_int8 records from a loader).
nlohmann::json int8_ranges(const fm::ModelSpec& spec, fm::Classifier& model,
                           const torch::Tensor& images) {
  fm::InferenceOptions plain;
  plain.channels_last = false;
  plain.onednn_layout = false;
  auto folded = fm::optimize_for_inference(spec, model, plain);
  fm::int8::Calibration calibration;
  c10::InferenceMode guard;
  finch::test::require(folded->backbone()->observe_int8(images, calibration), "observe_int8");
  return calibration.to_json();
}

// A model with random BatchNorm statistics, in eval mode, and its int8 copy calibrated on
// `calibration`, with the ranges recorded.
struct Int8Pair {
  fm::Classifier fp32{nullptr};
  fm::Classifier int8{nullptr};
  nlohmann::json ranges;
};
Int8Pair int8_pair(const fm::ModelSpec& spec, const torch::Tensor& calibration) {
  Int8Pair pair;
  pair.fp32 = fm::build_classifier(spec);
  randomise_batchnorms(pair.fp32);
  pair.fp32->eval();
  fm::InferenceOptions options;
  options.dtype = torch::kQUInt8;
  options.int8_ranges = pair.ranges = int8_ranges(spec, pair.fp32, calibration);
  pair.int8 = fm::optimize_for_inference(spec, pair.fp32, options);
  return pair;
}

}  // namespace

// Post-training int8 of both residual block kinds: close to fp32 (one quantum of 8 bits per
// layer adds up to a few percent of the logit scale), the same top-1 on most images, and the
// input stays a float tensor (the model quantizes it with its calibrated scale).
TEST(Inference, Int8CopyIsCloseToFp32) {
  // Basic blocks, bottlenecks, and grouped 3x3 convolutions (ResNeXt).
  for (const std::string arch : {"resnet18", "resnet50", "resnext50_32x4d"}) {
    torch::manual_seed(3);
    auto [model, int8, ranges] = int8_pair(spec_of(arch, 10), torch::randn({8, 3, 64, 64}));
    EXPECT_EQ(ranges.size(), arch == "resnet18" ? 2u + 3 * 8 + 3 : 2u + 4 * 16 + 4);
    const auto images = torch::randn({16, 3, 64, 64});
    fm::InferenceOptions options;
    options.dtype = torch::kQUInt8;
    const torch::Tensor input = fm::prepare_inference_input(images, options);
    EXPECT_EQ(input.scalar_type(), torch::kFloat);
    c10::InferenceMode guard;
    const auto expected = model->forward(images);
    const auto got = int8->forward(input);
    EXPECT_EQ(got.logits.scalar_type(), torch::kFloat);
    EXPECT_FALSE(got.logits.is_quantized());
    const double diff = max_relative_difference(got.logits, expected.logits);
    EXPECT_LT(diff, 0.15) << arch;
    EXPECT_GT(diff, 1e-4) << arch << ": no quantization happened";
    EXPECT_GE(got.logits.argmax(1).eq(expected.logits.argmax(1)).sum().item<int64_t>(), 13) << arch;
  }
}

// A linear head reads the last stage only, so the int8 copy dequantizes nothing else; a
// multi-scale head (pim) gets every stage, and still classifies close to fp32.
TEST(Inference, Int8DequantizesTheStagesTheHeadReads) {
  for (const std::string head : {"linear", "pim"}) {
    torch::manual_seed(5);
    auto spec = spec_of("resnet18", 10);
    spec["head"] = head;
    const auto images = torch::randn({8, 3, 64, 64});
    auto [model, int8, ranges] = int8_pair(spec, images);
    c10::InferenceMode guard;
    const auto stages = int8->backbone()->forward_features(images).stages;
    ASSERT_EQ(stages.size(), 4u);
    for (size_t s = 0; s + 1 < stages.size(); ++s)
      EXPECT_EQ(stages[s].defined(), head == "pim") << head << " stage " << s + 1;
    EXPECT_TRUE(stages.back().defined());
    const auto expected = model->forward(images).logits;
    const auto got = int8->forward(images).logits;
    EXPECT_LT(max_relative_difference(got, expected), 0.15) << head;
  }
}

TEST(Inference, Int8RefusesWhatItCannotRun) {
  torch::manual_seed(4);
  const auto spec18 = spec_of("resnet18", 10);
  auto resnet18 = fm::build_classifier(spec18);
  resnet18->eval();
  const auto images = torch::randn({2, 3, 64, 64});
  fm::InferenceOptions options;
  options.dtype = torch::kQUInt8;
  options.int8_ranges = int8_ranges(spec18, resnet18, images);

  // Ranges recorded for another architecture: too few or too many points.
  const auto spec34 = spec_of("resnet34", 10);
  auto resnet34 = fm::build_classifier(spec34);
  EXPECT_CONTAINS(
      finch::test::error_of([&] { fm::optimize_for_inference(spec34, resnet34, options); }),
      "recorded for another architecture");
  fm::InferenceOptions extra = options;
  extra.int8_ranges.push_back({0.0, 1.0});
  EXPECT_CONTAINS(
      finch::test::error_of([&] { fm::optimize_for_inference(spec18, resnet18, extra); }),
      "recorded for another architecture");
  fm::InferenceOptions broken = options;
  broken.int8_ranges[3] = {2.0, 1.0};
  EXPECT_CONTAINS(
      finch::test::error_of([&] { fm::optimize_for_inference(spec18, resnet18, broken); }),
      "min <= max");
  // Architectures without an int8 path say so instead of running something else.
  const auto vgg = spec_of("vgg11", 10);
  auto vgg11 = fm::build_classifier(vgg);
  EXPECT_CONTAINS(finch::test::error_of([&] { fm::optimize_for_inference(vgg, vgg11, options); }),
                  "int8 inference supports the ResNet family");
  fm::int8::Calibration unused;
  EXPECT_FALSE(vgg11->backbone()->observe_int8(images, unused));
}

TEST(Inference, ParseDtype) {
  EXPECT_EQ(fm::parse_inference_dtype("fp32"), torch::kFloat);
  EXPECT_EQ(fm::parse_inference_dtype("bf16"), torch::kBFloat16);
  EXPECT_EQ(fm::parse_inference_dtype("int8"), torch::kQUInt8);
  EXPECT_THROW(fm::parse_inference_dtype("fp16"), std::exception);
}

TEST(Inference, CountsResNet50MultiplyAdds) {
  // torchvision documents 4.09 GFLOPS (multiply-adds) for ResNet-50 at 224; by hand the
  // 1000-class fc adds 2.048 M. Shapes scale the count: at 448 it is 4x the convs.
  auto model = fm::build_classifier(spec_of("resnet50", 1000));
  model->eval();
  const double macs224 = finch::bench::count_macs_per_image(model, torch::randn({1, 3, 224, 224}));
  EXPECT_NEAR(macs224 / 1e9, 4.09, 0.02);
  auto small = fm::build_classifier(spec_of("resnet20", 10));
  small->eval();
  const double macs32 = finch::bench::count_macs_per_image(small, torch::randn({2, 3, 32, 32}));
  // resnet20 (width 16) at 32x32 by hand: stem 32*32*16*27 = 442,368; stage 1 six 3x3
  // 16->16 convs 14,155,776; stage 2 1,179,648 + 11,796,480 + 1x1 shortcut 131,072; stage 3
  // the same again; fc 640. Sum 40,813,184 (He et al. quote ~41 M).
  EXPECT_DOUBLE_EQ(macs32, 40813184.0);
}

TEST(Bench, Percentile) {
  EXPECT_DOUBLE_EQ(finch::bench::percentile({1, 2, 3, 4, 5}, 50), 3);
  EXPECT_DOUBLE_EQ(finch::bench::percentile({1, 2, 3, 4}, 50), 2.5);
  EXPECT_DOUBLE_EQ(finch::bench::percentile({5, 1}, 100), 5);
  EXPECT_GT(finch::bench::peak_rss_mib(), 1.0);
}

// oneDNN 2.6's NHWC 1x1 backward-data kernel writes past the input gradient of convolutions
// narrower than a SIMD register (valgrind found it on a width-4 ResNet-20): such models must
// stay NCHW; every torchvision-width model may go channels-last.
TEST(Inference, ChannelsLastOnlyForConvolutionsOfWholeSimdWidths) {
  auto resnet20 = [](int64_t width) {
    fm::ModelSpec spec = spec_of("resnet20", 3);
    spec["width"] = width;
    return fm::build_classifier(spec);
  };
  EXPECT_FALSE(fm::channels_last_is_safe(*resnet20(4)));
  EXPECT_FALSE(fm::channels_last_is_safe(*resnet20(8)));
  EXPECT_TRUE(fm::channels_last_is_safe(*resnet20(16)));  // the image's 3 channels are exempt
  EXPECT_TRUE(fm::channels_last_is_safe(*fm::build_classifier(spec_of("resnet50", 10))));
}

// kCopy leaves the conv alone (ONNX export folds the user's model); kInPlace gives the same
// folded weights in the conv's own storage (a model optimised in place).
TEST(Inference, FoldingCopiesOrScalesInPlace) {
  torch::manual_seed(0);
  torch::nn::Conv2d conv(torch::nn::Conv2dOptions(4, 6, 3).bias(false));
  torch::nn::BatchNorm2d bn(6);
  {
    torch::NoGradGuard no_grad;
    bn->running_mean.uniform_(-0.5, 0.5);
    bn->running_var.uniform_(0.5, 2.0);
    bn->weight.uniform_(0.5, 1.5);
  }
  bn->eval();
  const torch::Tensor original = conv->weight.detach().clone();
  auto copied = fm::fold_batchnorm(conv, bn);
  EXPECT_TRUE(torch::equal(conv->weight, original)) << "kCopy must not change the input conv";
  auto in_place = fm::fold_batchnorm(conv, bn, fm::FoldWeights::kInPlace);
  EXPECT_TRUE(torch::equal(in_place->weight, copied->weight));
  EXPECT_EQ(in_place->weight.data_ptr(), conv->weight.data_ptr());
  EXPECT_FALSE(torch::equal(conv->weight, original));
  const auto x = torch::randn({2, 4, 8, 8});
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(
      torch::allclose(in_place(x), bn(torch::nn::functional::conv2d(x, original)), 1e-4, 1e-5));
}
