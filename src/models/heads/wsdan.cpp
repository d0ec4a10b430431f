// WS-DAN head (Hu et al., "See Better Before Looking Closer: Weakly Supervised Data
// Augmentation Network for Fine-Grained Visual Classification", 2019).
//  - M attention maps A = ReLU(BN(conv1x1(F))) from the last stage F;
//  - bilinear attention pooling: part-feature matrix P[m] = mean over positions of A_m * F,
//    signed square root and L2 normalisation of the flattened [M x C] matrix (the embedding,
//    on which the recipe puts a centre loss), classified by a linear layer;
//  - training views (attention-guided augmentation): per image, one attention map sampled
//    with probability ~ sqrt of its mass, normalised to [0, 1]; a *crop* of the image around
//    map >= theta_c (theta_c ~ U(crop_threshold)), resized back, and a *drop* of the image
//    where map > theta_d (theta_d ~ U(drop_threshold)); the trainer classifies both;
//  - evaluation: the coarse prediction is averaged with a refined one on the crop around the
//    mean attention map (>= refine_threshold).
// Options in `model.wsdan`: parts (32), crop_threshold ([0.4, 0.6]), drop_threshold
// ([0.2, 0.5]), refine (true), refine_threshold (0.1). The defaults are the paper's and its
// authors' PyTorch code's (GuYuc/WS-DAN.PyTorch), including the x100 scale of the normalised
// features before the classifier.
#include <torch/nn/init.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/torch.h>

#include "finch/core/error.h"
#include "finch/models/batchnorm.h"
#include "finch/models/registry.h"

namespace finch::models {

namespace {

namespace nn = torch::nn;
namespace F = torch::nn::functional;

constexpr double kEps = 1e-12;
constexpr double kFeatureScale = 100.0;  // GuYuc/WS-DAN.PyTorch: fc(feature_matrix * 100)
constexpr double kCropPadding = 0.1, kRefinePadding = 0.05;  // share of the image side

std::pair<double, double> threshold_range(const ModelSpec& options, const std::string& key,
                                          std::pair<double, double> fallback) {
  auto r = spec_value<std::vector<double>>(options, key, {fallback.first, fallback.second});
  if (r.size() != 2 || !(0 <= r[0] && r[0] <= r[1] && r[1] <= 1))
    throw Error("model.wsdan." + key + " must be [lo, hi] with 0 <= lo <= hi <= 1");
  return {r[0], r[1]};
}

// `map` [h, w] upsampled to the image size and divided by its maximum.
torch::Tensor normalised_map(const torch::Tensor& map, int64_t height, int64_t width) {
  torch::Tensor up =
      F::interpolate(map.unsqueeze(0).unsqueeze(0), F::InterpolateFuncOptions()
                                                        .size(std::vector<int64_t>{height, width})
                                                        .mode(torch::kBilinear)
                                                        .align_corners(false))[0][0];
  return up / (up.max() + kEps);
}

// The image [3, H, W] cropped to the box around mask > 0 (padded by `padding` x the image
// side; the whole image when the mask is empty), resized back to H x W.
torch::Tensor crop_to_mask(const torch::Tensor& image, const torch::Tensor& mask, double padding) {
  const int64_t height = image.size(1), width = image.size(2);
  torch::Tensor rows = mask.any(1).nonzero(), cols = mask.any(0).nonzero();
  if (rows.numel() == 0) return image;
  const auto pad_y = static_cast<int64_t>(padding * height),
             pad_x = static_cast<int64_t>(padding * width);
  const int64_t y0 = std::max<int64_t>(0, rows.min().item<int64_t>() - pad_y);
  const int64_t y1 = std::min<int64_t>(height, rows.max().item<int64_t>() + 1 + pad_y);
  const int64_t x0 = std::max<int64_t>(0, cols.min().item<int64_t>() - pad_x);
  const int64_t x1 = std::min<int64_t>(width, cols.max().item<int64_t>() + 1 + pad_x);
  torch::Tensor crop = image.slice(1, y0, y1).slice(2, x0, x1).unsqueeze(0);
  return F::interpolate(crop, F::InterpolateFuncOptions()
                                  .size(std::vector<int64_t>{height, width})
                                  .mode(torch::kBilinear)
                                  .align_corners(false))[0];
}

class WsdanHeadImpl : public HeadImpl {
 public:
  WsdanHeadImpl(const ModelSpec& spec, const BackboneImpl& backbone) {
    const ModelSpec options = spec_section(spec, "wsdan");
    parts_ = spec_value<int64_t>(options, "parts", 32);
    if (parts_ < 1) throw Error("model.wsdan.parts must be >= 1");
    crop_ = threshold_range(options, "crop_threshold", {0.4, 0.6});
    drop_ = threshold_range(options, "drop_threshold", {0.2, 0.5});
    refine_ = spec_value<bool>(options, "refine", true);
    refine_threshold_ = spec_value<double>(options, "refine_threshold", 0.1);
    const int64_t channels = backbone.num_features();
    attention = register_module("attention",
                                nn::Conv2d(nn::Conv2dOptions(channels, parts_, 1).bias(false)));
    attention_bn = register_module("attention_bn", BatchNorm2d(parts_));
    dropout = register_module("dropout", nn::Dropout(spec_value<double>(spec, "dropout", 0.0)));
    fc = register_module(
        "fc", nn::Linear(parts_ * channels, spec_value<int64_t>(spec, "num_classes", 0)));
  }

  ModelOutput forward_head(const Features& features, BackboneImpl&) override {
    const torch::Tensor& map = features.stages.back();         // [B, C, h, w]
    torch::Tensor maps = attention_bn(attention(map)).relu();  // [B, M, h, w]
    const double positions = static_cast<double>(map.size(2) * map.size(3));
    torch::Tensor parts = torch::einsum("bmhw,bchw->bmc", {maps, map}) / positions;
    parts = torch::sign(parts) * torch::sqrt(parts.abs() + kEps);
    torch::Tensor embedding = F::normalize(parts.flatten(1), F::NormalizeFuncOptions().dim(1));
    ModelOutput out;
    out.logits = fc(dropout(embedding * kFeatureScale));
    out.embedding = embedding;
    out.attention = maps;
    return out;
  }

  std::vector<torch::Tensor> training_views(const torch::Tensor& images, const ModelOutput& output,
                                            Rng& rng) override {
    torch::NoGradGuard no_grad;
    const torch::Tensor maps = output.attention.detach().to(torch::kFloat).cpu();
    const int64_t b = images.size(0), height = images.size(2), width = images.size(3);
    // Sampling weights: sqrt of each map's mass, per image.
    torch::Tensor weights = torch::sqrt(maps.sum({2, 3}) + kEps);
    weights = weights / weights.sum(1, true);
    std::vector<torch::Tensor> crops, drops;
    auto w_all = weights.accessor<float, 2>();
    for (int64_t i = 0; i < b; ++i) {
      auto pick = [&] {
        const double u = rng.uniform();
        double cumulative = 0;
        auto w = w_all[i];
        for (int64_t m = 0; m < parts_; ++m) {
          cumulative += w[m];
          if (u < cumulative) return m;
        }
        return parts_ - 1;
      };
      torch::Tensor crop_map = normalised_map(maps[i][pick()], height, width).to(images.device());
      torch::Tensor drop_map = normalised_map(maps[i][pick()], height, width).to(images.device());
      const double theta_c = rng.uniform(crop_.first, crop_.second);
      const double theta_d = rng.uniform(drop_.first, drop_.second);
      crops.push_back(crop_to_mask(images[i], crop_map >= theta_c, kCropPadding));
      drops.push_back(images[i] * (drop_map < theta_d).to(images.dtype()));
    }
    return {torch::stack(crops), torch::stack(drops)};
  }

  torch::Tensor refinement_view(const torch::Tensor& images, const ModelOutput& output) override {
    if (!refine_) return {};
    torch::NoGradGuard no_grad;
    const torch::Tensor mean_maps = output.attention.mean(1);  // [B, h, w]
    std::vector<torch::Tensor> crops;
    for (int64_t i = 0; i < images.size(0); ++i) {
      torch::Tensor map = normalised_map(mean_maps[i], images.size(2), images.size(3));
      crops.push_back(crop_to_mask(images[i], map >= refine_threshold_, kRefinePadding));
    }
    return torch::stack(crops);
  }

  int64_t embedding_dim() const override { return fc->options.in_features(); }
  double default_clip_grad_norm() const override { return 1.0; }

 private:
  int64_t parts_ = 32;
  std::pair<double, double> crop_, drop_;
  bool refine_ = true;
  double refine_threshold_ = 0.1;
  nn::Conv2d attention{nullptr};
  BatchNorm2d attention_bn{nullptr};
  nn::Dropout dropout{nullptr};
  nn::Linear fc{nullptr};
};

FINCH_REGISTER_HEAD({"wsdan",
                     "WS-DAN (Hu et al. 2019): attention maps, bilinear attention pooling, "
                     "attention-guided crop / drop views in training, refined prediction",
                     [](const ModelSpec& spec, const BackboneImpl& backbone) {
                       return std::make_shared<WsdanHeadImpl>(spec, backbone);
                     },
                     {{"model.wsdan", R"(parts: 32
crop_threshold: [0.4, 0.6]
drop_threshold: [0.2, 0.5]
refine: true           # evaluate the mean of coarse and attention-cropped predictions
refine_threshold: 0.1)"}}});

}  // namespace

}  // namespace finch::models
