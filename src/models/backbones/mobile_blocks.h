#pragma once
// Building blocks shared by mobilenet.cpp (MobileNetV2/V3) and efficientnet.cpp, with
// torchvision's names: Conv2dNormActivation ("0" conv, "1" BatchNorm), SqueezeExcitation
// (fc1, fc2), the inverted residual / MBConv block, and row-mode stochastic depth (also used
// by convnext.cpp). Internal to the backbones: no header under include/.
//
// MobileBackboneImpl is the common body: `features.<i>` units run in order; a stage ends with
// the last unit before each stride-2 unit (the stem opens the first stage) and the last stage
// ends with the final 1x1 conv, the map torchvision pools.
#include <torch/nn/init.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "backbone_util.h"
#include "finch/models/batchnorm.h"
#include "finch/models/inference.h"
#include "finch/models/model.h"

namespace finch::models::mobile {

namespace nn = torch::nn;
using backbone_util::fold_conv_bn;
using backbone_util::stochastic_depth;

enum class Activation { kNone, kReLU, kReLU6, kHardswish, kSiLU, kSigmoid, kHardsigmoid };

// In place, as torchvision's inplace=True activations (their input is a fresh BN/conv output).
inline torch::Tensor activate_(torch::Tensor x, Activation a) {
  switch (a) {
    case Activation::kNone:
      return x;
    case Activation::kReLU:
      return x.relu_();
    case Activation::kReLU6:
      return torch::hardtanh_(x, 0.0, 6.0);
    case Activation::kHardswish:
      return torch::hardswish_(x);
    case Activation::kSiLU:
      return torch::silu_(x);
    case Activation::kSigmoid:
      return x.sigmoid_();
    case Activation::kHardsigmoid:
      return torch::hardsigmoid_(x);
  }
  return x;
}

struct BnOptions {
  double eps = 1e-5;
  double momentum = 0.1;
};

// A child of `features`: runs, and folds its BatchNorms for inference copies.
class UnitImpl : public nn::Module {
 public:
  virtual torch::Tensor forward(const torch::Tensor& x) = 0;
  virtual void fold_batchnorm() = 0;
};

// torchvision's Conv2dNormActivation: conv without bias ("0"), BatchNorm ("1"), activation.
// tf_padding (model.tf_padding, for weights from Keras): a strided convolution pads only right
// and bottom, by kernel - stride, as Keras' MobileNetV2 does (ZeroPadding2D + "valid").
class ConvBnActImpl : public UnitImpl {
 public:
  ConvBnActImpl(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t groups,
                Activation activation, const BnOptions& bn_options, bool tf_padding = false)
      : activation_(activation) {
    if (tf_padding && stride > 1) tf_pad_ = kernel - stride;
    conv_ = register_module("0", nn::Conv2d(nn::Conv2dOptions(in, out, kernel)
                                                .stride(stride)
                                                .padding(tf_pad_ > 0 ? 0 : (kernel - 1) / 2)
                                                .groups(groups)
                                                .bias(false)));
    bn_ = register_module(
        "1",
        BatchNorm2d(nn::BatchNormOptions(out).eps(bn_options.eps).momentum(bn_options.momentum)));
  }
  torch::Tensor forward(const torch::Tensor& x) override {
    torch::Tensor y = conv_(tf_pad_ > 0 ? torch::constant_pad_nd(x, {0, tf_pad_, 0, tf_pad_}) : x);
    if (bn_) y = bn_(y);
    return activate_(y, activation_);
  }
  void fold_batchnorm() override { fold_conv_bn(*this, "0", conv_, "1", bn_); }

  // For writers of the same computation (export/onnx.cpp).
  const nn::Conv2d& conv() const { return conv_; }
  const BatchNorm2d& bn() const { return bn_; }  // null once folded
  Activation activation() const { return activation_; }
  int64_t tf_pad() const { return tf_pad_; }  // right / bottom zero padding before conv()

 private:
  nn::Conv2d conv_{nullptr};
  BatchNorm2d bn_{nullptr};
  Activation activation_;
  int64_t tf_pad_ = 0;
};
TORCH_MODULE(ConvBnAct);

// torchvision.ops.SqueezeExcitation: x * scale(fc2(act(fc1(avgpool(x))))).
class SqueezeExcitationImpl : public nn::Module {
 public:
  SqueezeExcitationImpl(int64_t channels, int64_t squeeze, Activation activation,
                        Activation scale_activation)
      : activation_(activation), scale_activation_(scale_activation) {
    fc1_ = register_module("fc1", nn::Conv2d(nn::Conv2dOptions(channels, squeeze, 1)));
    fc2_ = register_module("fc2", nn::Conv2d(nn::Conv2dOptions(squeeze, channels, 1)));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor scale = fc1_(torch::adaptive_avg_pool2d(x, {1, 1}));
    scale = activate_(fc2_(activate_(scale, activation_)), scale_activation_);
    return scale * x;
  }

  const nn::Conv2d& fc1() const { return fc1_; }
  const nn::Conv2d& fc2() const { return fc2_; }
  Activation activation() const { return activation_; }
  Activation scale_activation() const { return scale_activation_; }

 private:
  nn::Conv2d fc1_{nullptr}, fc2_{nullptr};
  Activation activation_, scale_activation_;
};
TORCH_MODULE(SqueezeExcitation);

struct InvertedResidualOptions {
  int64_t in = 0, expanded = 0, out = 0, kernel = 3, stride = 1;
  Activation activation = Activation::kReLU6;
  int64_t se_channels = 0;  // 0: no squeeze-excitation
  Activation se_activation = Activation::kReLU, se_scale = Activation::kHardsigmoid;
  BnOptions bn;
  double drop_path = 0.0;  // stochastic depth of the residual branch (EfficientNet)
  // MobileNetV2: children under "conv" and the projection as a bare conv + BN (two indices);
  // MobileNetV3 / EfficientNet: children under "block", the projection a Conv2dNormActivation.
  bool v2_layout = false;
  bool tf_padding = false;  // ConvBnAct's
};

// Inverted residual (MobileNetV2 / V3) and MBConv (EfficientNet): [1x1 expand] -> depthwise
// kxk -> [squeeze-excitation] -> linear 1x1 projection, plus the input when the shape allows.
class InvertedResidualImpl : public UnitImpl {
 public:
  explicit InvertedResidualImpl(const InvertedResidualOptions& o) : o_(o) {
    residual_ = o.stride == 1 && o.in == o.out;
    body_ = register_module(o.v2_layout ? "conv" : "block", std::make_shared<nn::Module>());
    auto add = [this](auto module) {
      return body_->register_module(std::to_string(next_++), module);
    };
    if (o.expanded != o.in) expand_ = add(ConvBnAct(o.in, o.expanded, 1, 1, 1, o.activation, o.bn));
    depthwise_ = add(ConvBnAct(o.expanded, o.expanded, o.kernel, o.stride, o.expanded, o.activation,
                               o.bn, o.tf_padding));
    if (o.se_channels > 0)
      se_ = add(SqueezeExcitation(o.expanded, o.se_channels, o.se_activation, o.se_scale));
    if (o.v2_layout) {
      project_conv_name_ = std::to_string(next_);
      project_conv_ = add(nn::Conv2d(nn::Conv2dOptions(o.expanded, o.out, 1).bias(false)));
      project_bn_name_ = std::to_string(next_);
      project_bn_ =
          add(BatchNorm2d(nn::BatchNormOptions(o.out).eps(o.bn.eps).momentum(o.bn.momentum)));
    } else {
      project_ = add(ConvBnAct(o.expanded, o.out, 1, 1, 1, Activation::kNone, o.bn));
    }
  }

  torch::Tensor forward(const torch::Tensor& x) override {
    torch::Tensor y = expand_ ? expand_(x) : x;
    y = depthwise_(y);
    if (se_) y = se_(y);
    if (project_) {
      y = project_(y);
    } else {
      y = project_conv_(y);
      if (project_bn_) y = project_bn_(y);
    }
    if (!residual_) return y;
    if (o_.v2_layout) return x + y;
    return stochastic_depth(y, o_.drop_path, is_training()).add_(x);
  }

  // The parts in order (null when absent); the projection is project() or, in MobileNetV2's
  // layout, project_conv() + project_bn() without activation.
  const ConvBnAct& expand() const { return expand_; }
  const ConvBnAct& depthwise() const { return depthwise_; }
  const SqueezeExcitation& se() const { return se_; }
  const ConvBnAct& project() const { return project_; }
  const nn::Conv2d& project_conv() const { return project_conv_; }
  const BatchNorm2d& project_bn() const { return project_bn_; }
  bool residual() const { return residual_; }  // output + input (stochastic depth in training)

  void fold_batchnorm() override {
    if (expand_) expand_->fold_batchnorm();
    depthwise_->fold_batchnorm();
    if (project_) project_->fold_batchnorm();
    if (project_conv_) {
      fold_conv_bn(*body_, project_conv_name_, project_conv_, project_bn_name_, project_bn_);
    }
  }

 private:
  InvertedResidualOptions o_;
  bool residual_ = false;
  int64_t next_ = 0;
  std::shared_ptr<nn::Module> body_;
  ConvBnAct expand_{nullptr}, depthwise_{nullptr}, project_{nullptr};
  SqueezeExcitation se_{nullptr};
  nn::Conv2d project_conv_{nullptr};
  BatchNorm2d project_bn_{nullptr};
  std::string project_conv_name_, project_bn_name_;
};
TORCH_MODULE(InvertedResidual);

// EfficientNet's features.<i>: a Sequential of MBConv blocks ("0", "1", ...).
class BlockSequenceImpl : public UnitImpl {
 public:
  void push_back(InvertedResidual block) {
    blocks_.push_back(register_module(std::to_string(blocks_.size()), block));
  }
  torch::Tensor forward(const torch::Tensor& x) override {
    torch::Tensor y = x;
    for (auto& block : blocks_) y = block(y);
    return y;
  }
  void fold_batchnorm() override {
    for (auto& block : blocks_) block->fold_batchnorm();
  }
  const std::vector<InvertedResidual>& blocks() const { return blocks_; }

 private:
  std::vector<InvertedResidual> blocks_;
};
TORCH_MODULE(BlockSequence);

// The body of MobileNetV2/V3 and EfficientNet: `features.<i>` units; stages as described in
// the header comment. Subclasses add their units, then call finish().
class MobileBackboneImpl : public BackboneImpl {
 public:
  Features forward_features(const torch::Tensor& images) override {
    Features out;
    torch::Tensor x = images;
    size_t stage = 0;
    for (size_t i = 0; i < units_.size(); ++i) {
      x = units_[i]->forward(x);
      if (stage < stage_ends_.size() && i == stage_ends_[stage]) {
        x = after_stage(++stage, x);
        out.stages.push_back(x);
      }
    }
    return out;
  }
  int64_t num_features() const override { return stage_channels_.back(); }
  std::vector<std::vector<std::string>> stage_prefixes() const override { return prefixes_; }
  std::vector<int64_t> stage_channels() const override { return stage_channels_; }
  bool fold_batchnorm() override {
    for (auto& unit : units_) unit->fold_batchnorm();
    return true;
  }
  // features.<i>, and the index of the last unit of each stage.
  const std::vector<std::shared_ptr<UnitImpl>>& units() const { return units_; }
  const std::vector<size_t>& stage_ends() const { return stage_ends_; }

 protected:
  MobileBackboneImpl() { features_ = register_module("features", std::make_shared<nn::Module>()); }

  void add_unit(std::shared_ptr<UnitImpl> unit, int64_t stride, int64_t out_channels) {
    units_.push_back(features_->register_module(std::to_string(units_.size()), std::move(unit)));
    strides_.push_back(stride);
    channels_.push_back(out_channels);
  }

  // Stage boundaries, and torchvision's initialisation: He-normal (fan_out) convolutions with
  // zero bias, BatchNorm weight 1 and bias 0, Linear N(0, 0.01) with zero bias.
  void finish() {
    prefixes_.emplace_back();
    for (size_t i = 0; i < units_.size(); ++i) {
      if (i > 0 && strides_[i] == 2) {
        stage_ends_.push_back(i - 1);
        stage_channels_.push_back(channels_[i - 1]);
        prefixes_.emplace_back();
      }
      prefixes_.back().push_back("features." + std::to_string(i));
    }
    stage_ends_.push_back(units_.size() - 1);
    stage_channels_.push_back(channels_.back());
    torch::NoGradGuard no_grad;
    for (auto& module : modules(/*include_self=*/false)) {
      if (auto* conv = module->as<nn::Conv2d>()) {
        nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanOut);
        if (conv->bias.defined()) nn::init::zeros_(conv->bias);
      } else if (auto* bn = module->as<nn::BatchNorm2d>()) {
        nn::init::ones_(bn->weight);
        nn::init::zeros_(bn->bias);
      } else if (auto* linear = module->as<nn::Linear>()) {
        nn::init::normal_(linear->weight, 0.0, 0.01);
        nn::init::zeros_(linear->bias);
      }
    }
  }

 private:
  std::shared_ptr<nn::Module> features_;
  std::vector<std::shared_ptr<UnitImpl>> units_;
  std::vector<int64_t> strides_, channels_;
  std::vector<size_t> stage_ends_;
  std::vector<int64_t> stage_channels_;
  std::vector<std::vector<std::string>> prefixes_;
};

// torchvision's _make_divisible: `v` rounded to the nearest multiple of `divisor`, at least
// `divisor` and never more than 10% below `v`.
inline int64_t make_divisible(double v, int64_t divisor = 8) {
  int64_t rounded =
      std::max<int64_t>(divisor, static_cast<int64_t>(v + divisor / 2.0) / divisor * divisor);
  if (rounded < 0.9 * v) rounded += divisor;
  return rounded;
}

}  // namespace finch::models::mobile
