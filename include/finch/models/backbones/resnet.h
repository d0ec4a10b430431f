#pragma once
// ResNet family with torchvision's module and parameter names (conv1, bn1, layer1.0.conv1,
// layer1.0.downsample.0, ...) so torchvision/timm state dicts load unchanged.
// He et al., "Deep Residual Learning for Image Recognition", CVPR 2016.
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/pooling.h>

#include <string>
#include <vector>

#include "finch/models/batchnorm.h"
#include "finch/models/int8.h"
#include "finch/models/model.h"

namespace finch::models {

struct ResNetOptions {
  bool bottleneck = false;       // Bottleneck (ResNet-50+) or BasicBlock (18/34, CIFAR)
  std::vector<int64_t> layers;   // blocks per stage, e.g. {3, 4, 6, 3}
  std::vector<int64_t> widths;   // planes per stage, e.g. {64, 128, 256, 512}
  bool small_input = false;      // 3x3 stride-1 stem, no max-pool (28-32 px images)
  int64_t groups = 1;            // ResNeXt cardinality
  int64_t width_per_group = 64;  // ResNeXt / Wide-ResNet base width
};

/// What both residual blocks offer the network that stacks them.
class ResidualBlockImpl : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(torch::Tensor x) = 0;
  /// Folds every BN (and the shortcut's) into the conv before it; inference copies only.
  virtual void fold_batchnorm() = 0;
  /// After folding: forward in fp32, recording each quantized activation (int8.h).
  virtual torch::Tensor observe_int8(torch::Tensor x, int8::Calibration& calibration) = 0;
  /// Prepacks int8 convs with the ranges observe_int8 recorded (same order).
  virtual void quantize_int8(int8::Calibration& calibration) = 0;
  /// quint8 in, quint8 out.
  virtual torch::Tensor forward_int8(const torch::Tensor& qx) const = 0;

 protected:
  torch::nn::Conv2d downsample_conv() const;  // the folded shortcut conv, or empty
  torch::nn::Sequential downsample{nullptr};
  int8::Conv q_downsample_;
  int8::QParams q_add_;
};

class BasicBlockImpl : public ResidualBlockImpl {
 public:
  static constexpr int64_t kExpansion = 1;
  BasicBlockImpl(int64_t in_planes, int64_t planes, int64_t stride, int64_t groups,
                 int64_t width_per_group);
  torch::Tensor forward(torch::Tensor x) override;
  void fold_batchnorm() override;
  torch::Tensor observe_int8(torch::Tensor x, int8::Calibration& calibration) override;
  void quantize_int8(int8::Calibration& calibration) override;
  torch::Tensor forward_int8(const torch::Tensor& qx) const override;

 private:
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  BatchNorm2d bn1{nullptr}, bn2{nullptr};
  int8::Conv q_conv1_, q_conv2_;
};
TORCH_MODULE(BasicBlock);

class BottleneckImpl : public ResidualBlockImpl {
 public:
  static constexpr int64_t kExpansion = 4;
  BottleneckImpl(int64_t in_planes, int64_t planes, int64_t stride, int64_t groups,
                 int64_t width_per_group);
  torch::Tensor forward(torch::Tensor x) override;
  void fold_batchnorm() override;
  torch::Tensor observe_int8(torch::Tensor x, int8::Calibration& calibration) override;
  void quantize_int8(int8::Calibration& calibration) override;
  torch::Tensor forward_int8(const torch::Tensor& qx) const override;

 private:
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  BatchNorm2d bn1{nullptr}, bn2{nullptr}, bn3{nullptr};
  int8::Conv q_conv1_, q_conv2_, q_conv3_;
};
TORCH_MODULE(Bottleneck);

class ResNetImpl : public BackboneImpl {
 public:
  explicit ResNetImpl(const ResNetOptions& options);
  Features forward_features(const torch::Tensor& images) override;
  int64_t num_features() const override { return num_features_; }
  std::vector<std::vector<std::string>> stage_prefixes() const override;
  int64_t output_stride() const override;
  std::vector<int64_t> stage_channels() const override;
  bool fold_batchnorm() override;
  bool use_onednn_layout() override;
  bool observe_int8(const torch::Tensor& images, int8::Calibration& calibration) override;
  bool quantize_int8(int8::Calibration& calibration, bool every_stage) override;

 private:
  std::vector<ResidualBlockImpl*> blocks(size_t stage) const;
  Features forward_int8(const torch::Tensor& images);

  ResNetOptions options_;
  bool folded_ = false;
  bool onednn_ = false;           // weights prepacked; forward_features runs on oneDNN tensors
  bool int8_ = false;             // quantize_int8 ran: forward_features runs the int8 path
  bool int8_every_stage_ = true;  // dequantize every stage map, not only the last
  int8::QParams q_input_;
  int8::Conv q_stem_;
  int64_t num_features_ = 0;
  torch::nn::Conv2d conv1{nullptr};
  BatchNorm2d bn1{nullptr};
  torch::nn::MaxPool2d maxpool{nullptr};
  std::vector<torch::nn::Sequential> stages_;  // registered as layer1..layerN
};

/// Options of a registered ResNet name (resnet18/34/50/101/152, resnext50_32x4d,
/// wide_resnet50_2, resnet20/32/56 with `width` channels in the first stage).
ResNetOptions resnet_options(const std::string& name, int64_t width = 16);

}  // namespace finch::models
