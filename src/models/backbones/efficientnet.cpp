// EfficientNet-B0 ... B7 with torchvision's names (features.<i>.<j>.block.<k>, MBConv blocks
// with squeeze-excitation fc1 / fc2). Tan & Le, "EfficientNet: Rethinking Model Scaling for
// Convolutional Neural Networks", ICML 2019.
//
// Five stages, at output strides 2, 4, 8, 16 and 32: features.0-1, 2, 3, 4-5 and 6-8, each
// ending with the last block before the next stride-2 block; the last ends with the final 1x1
// conv (1280 channels for B0), the map torchvision pools. embed() is its global average (what
// torchvision's classifier.1 sees; classifier.0 is the head's dropout). Stochastic depth as
// torchvision: row mode, probability 0.2 x block index / block count, training only.
// BatchNorm as torchvision: torch's defaults for B0-B4, eps 1e-3 and momentum 0.01 for B5-B7.
#include <fmt/format.h>

#include <cmath>

#include "finch/models/registry.h"
#include "mobile_blocks.h"

namespace finch::models {

namespace {

using mobile::Activation;
using mobile::BnOptions;

struct Scaling {
  double width, depth;
  int64_t crop;  // torchvision's evaluation crop for the ImageNet weights
  double params_m;
};

const std::vector<std::pair<std::string, Scaling>>& efficientnet_variants() {
  static const std::vector<std::pair<std::string, Scaling>> v = {
      {"efficientnet_b0", {1.0, 1.0, 224, 5.3}},  {"efficientnet_b1", {1.0, 1.1, 240, 7.8}},
      {"efficientnet_b2", {1.1, 1.2, 288, 9.1}},  {"efficientnet_b3", {1.2, 1.4, 300, 12.2}},
      {"efficientnet_b4", {1.4, 1.8, 380, 19.3}}, {"efficientnet_b5", {1.6, 2.2, 456, 30.4}},
      {"efficientnet_b6", {1.8, 2.6, 528, 43.0}}, {"efficientnet_b7", {2.0, 3.1, 600, 66.3}}};
  return v;
}

class EfficientNetImpl : public mobile::MobileBackboneImpl {
 public:
  EfficientNetImpl(const Scaling& scaling, const BnOptions& bn) {
    struct Row {
      int64_t expand, kernel, stride, in, out, layers;  // Table 1 of the paper, B0
    };
    const Row rows[] = {{1, 3, 1, 32, 16, 1},  {6, 3, 2, 16, 24, 2},  {6, 5, 2, 24, 40, 2},
                        {6, 3, 2, 40, 80, 3},  {6, 5, 1, 80, 112, 3}, {6, 5, 2, 112, 192, 4},
                        {6, 3, 1, 192, 320, 1}};
    auto width = [&](int64_t c) { return mobile::make_divisible(c * scaling.width); };
    auto depth = [&](int64_t n) { return static_cast<int64_t>(std::ceil(n * scaling.depth)); };
    int64_t total_blocks = 0;
    for (const Row& row : rows) total_blocks += depth(row.layers);

    const int64_t stem = width(rows[0].in);
    add_unit(mobile::ConvBnAct(3, stem, 3, 2, 1, Activation::kSiLU, bn).ptr(), 2, stem);
    int64_t block_id = 0;
    for (const Row& row : rows) {
      mobile::BlockSequence stage;
      const int64_t out = width(row.out);
      for (int64_t i = 0, n = depth(row.layers); i < n; ++i) {
        mobile::InvertedResidualOptions o;
        o.in = i == 0 ? width(row.in) : out;
        o.expanded = mobile::make_divisible(static_cast<double>(o.in * row.expand));
        o.out = out;
        o.kernel = row.kernel;
        o.stride = i == 0 ? row.stride : 1;
        o.activation = Activation::kSiLU;
        o.se_channels = std::max<int64_t>(1, o.in / 4);
        o.se_activation = Activation::kSiLU;
        o.se_scale = Activation::kSigmoid;
        o.bn = bn;
        o.drop_path = 0.2 * static_cast<double>(block_id++) / static_cast<double>(total_blocks);
        stage->push_back(mobile::InvertedResidual(o));
      }
      add_unit(stage.ptr(), row.stride, out);
    }
    const int64_t last_in = width(rows[6].out), last = 4 * last_in;
    add_unit(mobile::ConvBnAct(last_in, last, 1, 1, 1, Activation::kSiLU, bn).ptr(), 1, last);
    finish();
  }
  std::string torchvision_classifier() const override { return "classifier.1"; }
};

bool register_efficientnets() {
  for (const auto& [name, scaling] : efficientnet_variants()) {
    const bool large = name >= "efficientnet_b5";
    const BnOptions bn = large ? BnOptions{0.001, 0.01} : BnOptions{};
    backbones().add(
        {name,
         fmt::format("EfficientNet-B{} (Tan & Le 2019), torchvision's names; {:.1f} M parameters, "
                     "5 stages; torchvision's ImageNet crop {} px",
                     name.back(), scaling.params_m, scaling.crop),
         [scaling = scaling, bn](const ModelSpec&) {
           return std::make_shared<EfficientNetImpl>(scaling, bn);
         },
         {}});
  }
  return true;
}

const bool kEfficientNetsRegistered = register_efficientnets();

}  // namespace

}  // namespace finch::models
