// Bilinear pooling head (B-CNN, Lin et al., ICCV 2015): the outer product of the last stage's
// features averaged over positions, Phi = X X^T / (h w), then signed square root
// sign(z) sqrt(|z| + eps), L2 normalisation, dropout and a linear classifier.
// The classifier sees the normalised vector times `logit_scale` (auto: sqrt(C), C = channels
// pooled; model files from before the option: 1): a unit vector
// spread over C^2 components gives the freshly initialised classifier logits near zero and
// gradients C times smaller than a C-channel average-pooled feature would, so with the lr
// that suits a linear head B-CNN barely moved (44% vs 72% in 93 Fashion-MNIST steps); the
// factor gives it the norm of such a feature. The embedding stays the unit vector.
// Options in `model.bilinear`:
//   reduce: 0      1x1 conv + BN + ReLU to this many channels first (0 = none; 2048^2 = 4 M
//                  features is large, 256-512 is usual for ResNet-50);
//   type: full     full | compact. compact is Tensor Sketch compact bilinear pooling (Gao et
//                  al., CVPR 2016): two count sketches of each position's features combined by
//                  circular convolution approximate the outer product in `dim` dimensions;
//   dim: 8192      compact: output dimensions.
// The hash functions of the sketch are buffers (fixed at initialisation, saved with the model).
#include "finch/models/heads/bilinear.h"

#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/torch.h>

#include <cmath>

#include "finch/core/error.h"
#include "finch/models/batchnorm.h"
#include "finch/models/registry.h"

namespace finch::models {

namespace {

namespace nn = torch::nn;
namespace F = torch::nn::functional;

constexpr double kSqrtEps = 1e-8;

torch::Tensor signed_sqrt_normalize(const torch::Tensor& z) {
  return F::normalize(torch::sign(z) * torch::sqrt(z.abs() + kSqrtEps),
                      F::NormalizeFuncOptions().dim(1));
}

}  // namespace

double bilinear_logit_scale(const ModelSpec& options, int64_t channels) {
  if (!options.contains("logit_scale")) return 1.0;  // a model file older than the option
  const auto& value = options["logit_scale"];
  if (value.is_string() && value.get<std::string>() == "auto")
    return std::sqrt(static_cast<double>(channels));
  if (value.is_number() && value.get<double>() > 0) return value.get<double>();
  throw Error("model.bilinear.logit_scale must be auto or a number > 0, got " + value.dump());
}

namespace {

class BilinearHeadImpl : public HeadImpl {
 public:
  BilinearHeadImpl(const ModelSpec& spec, const BackboneImpl& backbone) {
    const ModelSpec options = spec_section(spec, "bilinear");
    const int64_t reduce = spec_value<int64_t>(options, "reduce", 0);
    const std::string type = spec_value<std::string>(options, "type", "full");
    int64_t channels = backbone.num_features();
    if (reduce < 0) throw Error("model.bilinear.reduce must be >= 0");
    if (reduce > 0) {
      reduce_conv =
          register_module("reduce", nn::Conv2d(nn::Conv2dOptions(channels, reduce, 1).bias(false)));
      reduce_bn = register_module("reduce_bn", BatchNorm2d(reduce));
      channels = reduce;
    }
    int64_t features = channels * channels;
    if (type == "compact") {
      features = spec_value<int64_t>(options, "dim", 8192);
      if (features < 1) throw Error("model.bilinear.dim must be >= 1");
      // Count-sketch hashes h_i: channel -> [0, dim) and signs s_i: channel -> +-1.
      for (int i = 0; i < 2; ++i) {
        hash_[i] = register_buffer("hash" + std::to_string(i),
                                   torch::randint(features, {channels}, torch::kLong));
        sign_[i] = register_buffer("sign" + std::to_string(i),
                                   torch::randint(2, {channels}, torch::kFloat) * 2 - 1);
      }
    } else if (type != "full") {
      throw Error("model.bilinear.type must be full or compact, got '" + type + "'");
    }
    compact_ = type == "compact";
    logit_scale_ = bilinear_logit_scale(options, channels);
    dim_ = features;
    dropout = register_module("dropout", nn::Dropout(spec_value<double>(spec, "dropout", 0.0)));
    fc = register_module("fc", nn::Linear(features, spec_value<int64_t>(spec, "num_classes", 0)));
  }

  ModelOutput forward_head(const Features& features, BackboneImpl&) override {
    torch::Tensor x = features.stages.back();
    if (reduce_conv) x = reduce_bn(reduce_conv(x)).relu();
    torch::Tensor pooled = compact_ ? sketch(x) : outer_product(x);
    torch::Tensor z = signed_sqrt_normalize(pooled);
    return {fc(dropout(z * logit_scale_)), z, {}, {}};
  }

  int64_t embedding_dim() const override { return dim_; }

 private:
  // [B, C, h, w] -> [B, C * C]: X X^T / (h w).
  static torch::Tensor outer_product(const torch::Tensor& x) {
    const int64_t b = x.size(0), c = x.size(1), n = x.size(2) * x.size(3);
    torch::Tensor flat = x.reshape({b, c, n});
    return torch::bmm(flat, flat.transpose(1, 2)).div(n).reshape({b, c * c});
  }

  // Tensor Sketch of the average outer product. By definition each position's sketch is the
  // circular convolution of two count sketches, psi_1(x) * psi_2(x) (Gao et al. compute it by
  // FFT), then averaged over positions. That convolution equals the count sketch of x x^T with
  // the hash (h_1(c) + h_2(c')) mod dim and the sign s_1(c) s_2(c') (Pham & Pagh 2013), a linear
  // map, so it commutes with the average: sketch Phi = X X^T / (h w) once per image. One small
  // bmm and a scatter of C^2 values replace 2 FFTs per position (Fashion-MNIST ResNet-20,
  // 49 positions: docs/methods.md); the result is the same up to float rounding.
  torch::Tensor sketch(const torch::Tensor& x) {
    const int64_t b = x.size(0), c = x.size(1);
    const torch::Tensor hash0 = hash_[0].to(torch::kLong), hash1 = hash_[1].to(torch::kLong);
    const torch::Tensor bins = (hash0.unsqueeze(1) + hash1.unsqueeze(0)).remainder(dim_).flatten();
    const torch::Tensor signs =
        (sign_[0].unsqueeze(1) * sign_[1].unsqueeze(0)).flatten().to(x.dtype());
    const torch::Tensor phi = outer_product(x);  // [B, C * C], row-major (c, c')
    TORCH_CHECK(phi.size(1) == c * c);
    return torch::zeros({b, dim_}, x.options()).index_add(1, bins, phi * signs);
  }

  bool compact_ = false;
  int64_t dim_ = 0;
  double logit_scale_ = 1;
  nn::Conv2d reduce_conv{nullptr};
  BatchNorm2d reduce_bn{nullptr};
  torch::Tensor hash_[2], sign_[2];
  nn::Dropout dropout{nullptr};
  nn::Linear fc{nullptr};
};

FINCH_REGISTER_HEAD({"bilinear",
                     "bilinear CNN pooling (Lin et al. 2015), full or compact (Tensor Sketch, Gao "
                     "et al. 2016), signed square root + L2",
                     [](const ModelSpec& spec, const BackboneImpl& backbone) {
                       return std::make_shared<BilinearHeadImpl>(spec, backbone);
                     },
                     {{"model.bilinear", R"(type: full     # full | compact (Tensor Sketch)
reduce: 0      # 1x1 conv to this many channels first (0 = none)
dim: 8192      # compact: output size
logit_scale: auto   # the classifier sees the unit vector times this (auto: sqrt(channels)))"}}});

}  // namespace

}  // namespace finch::models
