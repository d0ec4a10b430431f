// MobileNetV2 and MobileNetV3 (small, large) with torchvision's names (features.<i>.conv.<j>
// for V2, features.<i>.block.<j> for V3, classifier.0 for V3's penultimate Linear).
// Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR 2018;
// Howard et al., "Searching for MobileNetV3", ICCV 2019.
//
// Five stages, at output strides 2, 4, 8, 16 and 32: each ends with the last block before the
// next stride-2 block, the last with the final 1x1 conv (1280 / 576 / 960 channels), the map
// torchvision pools. MobileNetV2: features.0-1, 2-3, 4-6, 7-13, 14-18; V3-small: 0, 1, 2-3,
// 4-8, 9-12; V3-large: 0-1, 2-3, 4-6, 7-12, 13-16. embed(): global average (V2); V3 adds
// classifier.0 (Linear to 1024 / 1280) and Hardswish, what torchvision's classifier.3 sees.
// Dropout belongs to the head (model.dropout).
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/linear.h>

#include "finch/core/error.h"
#include "finch/models/registry.h"
#include "mobile_blocks.h"

namespace finch::models {

namespace {

using mobile::Activation;
using mobile::BnOptions;
using mobile::ConvBnAct;
using mobile::InvertedResidual;
using mobile::InvertedResidualOptions;
namespace nn = torch::nn;

class MobileNetV2Impl : public mobile::MobileBackboneImpl {
 public:
  explicit MobileNetV2Impl(bool tf_padding) {
    struct Row {
      int64_t t, c, n, s;  // expansion, channels, blocks, stride of the first
    };
    const Row rows[] = {{1, 16, 1, 1}, {6, 24, 2, 2},  {6, 32, 3, 2}, {6, 64, 4, 2},
                        {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};
    const BnOptions bn;  // torch's defaults
    int64_t in = 32;
    add_unit(ConvBnAct(3, in, 3, 2, 1, Activation::kReLU6, bn, tf_padding).ptr(), 2, in);
    for (const Row& row : rows) {
      for (int64_t i = 0; i < row.n; ++i) {
        InvertedResidualOptions o;
        o.in = in;
        o.expanded = in * row.t;
        o.out = row.c;
        o.stride = i == 0 ? row.s : 1;
        o.activation = Activation::kReLU6;
        o.bn = bn;
        o.v2_layout = true;
        o.tf_padding = tf_padding;
        add_unit(InvertedResidual(o).ptr(), o.stride, o.out);
        in = row.c;
      }
    }
    add_unit(ConvBnAct(in, 1280, 1, 1, 1, Activation::kReLU6, bn).ptr(), 1, 1280);
    finish();
  }
  std::string torchvision_classifier() const override { return "classifier.1"; }
};

// One row of Tables 1 / 2 of the MobileNetV3 paper (torchvision's bneck_conf).
struct V3Row {
  int64_t in, kernel, expanded, out;
  bool se;
  bool hardswish;
  int64_t stride;
};

std::vector<V3Row> v3_rows(const std::string& name) {
  if (name == "mobilenet_v3_large")
    return {{16, 3, 16, 16, false, false, 1},  {16, 3, 64, 24, false, false, 2},
            {24, 3, 72, 24, false, false, 1},  {24, 5, 72, 40, true, false, 2},
            {40, 5, 120, 40, true, false, 1},  {40, 5, 120, 40, true, false, 1},
            {40, 3, 240, 80, false, true, 2},  {80, 3, 200, 80, false, true, 1},
            {80, 3, 184, 80, false, true, 1},  {80, 3, 184, 80, false, true, 1},
            {80, 3, 480, 112, true, true, 1},  {112, 3, 672, 112, true, true, 1},
            {112, 5, 672, 160, true, true, 2}, {160, 5, 960, 160, true, true, 1},
            {160, 5, 960, 160, true, true, 1}};
  if (name == "mobilenet_v3_small")
    return {{16, 3, 16, 16, true, false, 2},  {16, 3, 72, 24, false, false, 2},
            {24, 3, 88, 24, false, false, 1}, {24, 5, 96, 40, true, true, 2},
            {40, 5, 240, 40, true, true, 1},  {40, 5, 240, 40, true, true, 1},
            {40, 5, 120, 48, true, true, 1},  {48, 5, 144, 48, true, true, 1},
            {48, 5, 288, 96, true, true, 2},  {96, 5, 576, 96, true, true, 1},
            {96, 5, 576, 96, true, true, 1}};
  throw Error("unknown MobileNetV3 variant '" + name +
              "' (use mobilenet_v3_small or mobilenet_v3_large)");
}

class MobileNetV3Impl : public mobile::MobileBackboneImpl {
 public:
  explicit MobileNetV3Impl(const std::string& name) {
    const auto rows = v3_rows(name);
    const BnOptions bn{0.001, 0.01};
    add_unit(ConvBnAct(3, rows.front().in, 3, 2, 1, Activation::kHardswish, bn).ptr(), 2,
             rows.front().in);
    for (const V3Row& row : rows) {
      InvertedResidualOptions o;
      o.in = row.in;
      o.expanded = row.expanded;
      o.out = row.out;
      o.kernel = row.kernel;
      o.stride = row.stride;
      o.activation = row.hardswish ? Activation::kHardswish : Activation::kReLU;
      if (row.se) o.se_channels = mobile::make_divisible(row.expanded / 4);
      o.se_activation = Activation::kReLU;
      o.se_scale = Activation::kHardsigmoid;
      o.bn = bn;
      add_unit(InvertedResidual(o).ptr(), o.stride, o.out);
    }
    const int64_t last_conv = 6 * rows.back().out;
    add_unit(ConvBnAct(rows.back().out, last_conv, 1, 1, 1, Activation::kHardswish, bn).ptr(), 1,
             last_conv);
    embedding_dim_ = name == "mobilenet_v3_large" ? 1280 : 1024;
    // classifier.0 (and its Hardswish) is the backbone's; torchvision's classifier.3 is head.fc.
    classifier_ =
        register_module("classifier", nn::Sequential(nn::Linear(last_conv, embedding_dim_)));
    finish();
  }

  torch::Tensor embed(const Features& features) override {
    torch::Tensor x = torch::adaptive_avg_pool2d(features.stages.back(), {1, 1}).flatten(1);
    return torch::hardswish(classifier_->forward(x));
  }
  int64_t embedding_dim() const override { return embedding_dim_; }
  std::string torchvision_classifier() const override { return "classifier.3"; }

 private:
  nn::Sequential classifier_{nullptr};
  int64_t embedding_dim_ = 0;
};

bool register_mobilenets() {
  backbones().add({"mobilenet_v2",
                   "MobileNetV2 (Sandler et al. 2018), torchvision's names; 3.5 M parameters, "
                   "5 stages (output strides 2-32)",
                   [](const ModelSpec& spec) {
                     return std::make_shared<MobileNetV2Impl>(
                         spec_value<bool>(spec, "tf_padding", false));
                   },
                   {{"model", backbone_util::kTfPaddingOption}}});
  for (const auto& [name, description] : std::vector<std::pair<std::string, std::string>>{
           {"mobilenet_v3_small",
            "MobileNetV3-Small (Howard et al. 2019), torchvision's names; 2.5 M parameters, "
            "5 stages, 1024-d embedding (classifier.0)"},
           {"mobilenet_v3_large",
            "MobileNetV3-Large (Howard et al. 2019), torchvision's names; 5.5 M parameters, "
            "5 stages, 1280-d embedding (classifier.0)"}}) {
    backbones().add(
        {name,
         description,
         [name = name](const ModelSpec&) { return std::make_shared<MobileNetV3Impl>(name); },
         {}});
  }
  return true;
}

const bool kMobileNetsRegistered = register_mobilenets();

}  // namespace

}  // namespace finch::models
