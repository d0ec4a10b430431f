#include "finch/models/inference.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "finch/bench/bench.h"
#include "finch/models/model.h"

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

TEST(Inference, ParseDtype) {
  EXPECT_EQ(fm::parse_inference_dtype("fp32"), torch::kFloat);
  EXPECT_EQ(fm::parse_inference_dtype("bf16"), torch::kBFloat16);
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
