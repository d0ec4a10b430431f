#include "finch/models/backbones/resnet.h"

#include <ATen/ops/mkldnn_reorder_conv2d_weight.h>
#include <torch/nn/functional/activation.h>
#include <torch/nn/init.h>

#include "backbone_util.h"
#include "finch/core/error.h"
#include "finch/models/inference.h"
#include "finch/models/registry.h"

namespace finch::models {

namespace {

namespace nn = torch::nn;
using backbone_util::fold_conv_bn;

nn::Conv2d conv3x3(int64_t in, int64_t out, int64_t stride = 1, int64_t groups = 1) {
  return backbone_util::conv2d(
      nn::Conv2dOptions(in, out, 3).stride(stride).padding(1).groups(groups).bias(false));
}

nn::Conv2d conv1x1(int64_t in, int64_t out, int64_t stride = 1) {
  return backbone_util::conv2d(nn::Conv2dOptions(in, out, 1).stride(stride).bias(false));
}

// torchvision's shortcut: 1x1 conv + BN when the shape changes ("option B" in the paper).
nn::Sequential make_downsample(int64_t in, int64_t out, int64_t stride) {
  if (stride == 1 && in == out) return nullptr;
  return nn::Sequential(conv1x1(in, out, stride), BatchNorm2d(out));
}

// After fold_batchnorm() a BN holder is empty and the conv's output passes through.
torch::Tensor bn_or_identity(BatchNorm2d& bn, torch::Tensor x) { return bn ? bn(x) : x; }

// The shortcut Sequential(conv, bn) becomes Sequential(folded conv).
void fold_downsample(nn::Module& parent, nn::Sequential& downsample) {
  if (!downsample || downsample->size() != 2) return;
  nn::Conv2d conv(std::dynamic_pointer_cast<nn::Conv2dImpl>(downsample->ptr(0)));
  nn::BatchNorm2d bn(std::dynamic_pointer_cast<nn::BatchNorm2dImpl>(downsample->ptr(1)));
  downsample = parent.replace_module(
      "downsample", nn::Sequential(fold_batchnorm(conv, bn, FoldWeights::kInPlace)));
}

}  // namespace

nn::Conv2d ResidualBlockImpl::downsample_conv() const {
  if (!downsample || downsample->size() != 1) throw Error("int8: fold the BatchNorms first");
  return nn::Conv2d(std::dynamic_pointer_cast<nn::Conv2dImpl>(downsample->ptr(0)));
}

BasicBlockImpl::BasicBlockImpl(int64_t in_planes, int64_t planes, int64_t stride, int64_t groups,
                               int64_t width_per_group) {
  if (groups != 1 || width_per_group != 64) {
    throw Error("BasicBlock supports only groups=1 and width_per_group=64");
  }
  conv1 = register_module("conv1", conv3x3(in_planes, planes, stride));
  bn1 = register_module("bn1", BatchNorm2d(planes));
  conv2 = register_module("conv2", conv3x3(planes, planes));
  bn2 = register_module("bn2", BatchNorm2d(planes));
  downsample = make_downsample(in_planes, planes * kExpansion, stride);
  if (downsample) register_module("downsample", downsample);
}

torch::Tensor BasicBlockImpl::forward(torch::Tensor x) {
  torch::Tensor identity = downsample ? downsample->forward(x) : x;
  torch::Tensor out = bn_or_identity(bn1, conv1(x)).relu_();
  out = bn_or_identity(bn2, conv2(out));
  return out.add_(identity).relu_();
}

void BasicBlockImpl::fold_batchnorm() {
  fold_conv_bn(*this, "conv1", conv1, "bn1", bn1);
  fold_conv_bn(*this, "conv2", conv2, "bn2", bn2);
  fold_downsample(*this, downsample);
}

// The int8 forms visit the same points in the same order: shortcut, each conv, the sum.
torch::Tensor BasicBlockImpl::observe_int8(torch::Tensor x, int8::Calibration& calibration) {
  torch::Tensor identity = downsample ? calibration.observe(downsample->forward(x)) : x;
  torch::Tensor out = calibration.observe(conv1(x).relu_());
  out = calibration.observe(conv2(out));
  return calibration.observe(out.add_(identity).relu_());
}

void BasicBlockImpl::quantize_int8(int8::Calibration& calibration) {
  if (downsample) q_downsample_ = int8::Conv(downsample_conv(), calibration.next(), false);
  q_conv1_ = int8::Conv(conv1, calibration.next(), /*relu=*/true);
  q_conv2_ = int8::Conv(conv2, calibration.next(), false);
  q_add_ = calibration.next();
}

torch::Tensor BasicBlockImpl::forward_int8(const torch::Tensor& qx) const {
  const torch::Tensor identity = q_downsample_.defined() ? q_downsample_(qx) : qx;
  return int8::add_relu(q_conv2_(q_conv1_(qx)), identity, q_add_);
}

BottleneckImpl::BottleneckImpl(int64_t in_planes, int64_t planes, int64_t stride, int64_t groups,
                               int64_t width_per_group) {
  const int64_t width = static_cast<int64_t>(planes * (width_per_group / 64.0)) * groups;
  conv1 = register_module("conv1", conv1x1(in_planes, width));
  bn1 = register_module("bn1", BatchNorm2d(width));
  conv2 = register_module("conv2", conv3x3(width, width, stride, groups));
  bn2 = register_module("bn2", BatchNorm2d(width));
  conv3 = register_module("conv3", conv1x1(width, planes * kExpansion));
  bn3 = register_module("bn3", BatchNorm2d(planes * kExpansion));
  downsample = make_downsample(in_planes, planes * kExpansion, stride);
  if (downsample) register_module("downsample", downsample);
}

torch::Tensor BottleneckImpl::forward(torch::Tensor x) {
  torch::Tensor identity = downsample ? downsample->forward(x) : x;
  torch::Tensor out = bn_or_identity(bn1, conv1(x)).relu_();
  out = bn_or_identity(bn2, conv2(out)).relu_();
  out = bn_or_identity(bn3, conv3(out));
  return out.add_(identity).relu_();
}

void BottleneckImpl::fold_batchnorm() {
  fold_conv_bn(*this, "conv1", conv1, "bn1", bn1);
  fold_conv_bn(*this, "conv2", conv2, "bn2", bn2);
  fold_conv_bn(*this, "conv3", conv3, "bn3", bn3);
  fold_downsample(*this, downsample);
}

torch::Tensor BottleneckImpl::observe_int8(torch::Tensor x, int8::Calibration& calibration) {
  torch::Tensor identity = downsample ? calibration.observe(downsample->forward(x)) : x;
  torch::Tensor out = calibration.observe(conv1(x).relu_());
  out = calibration.observe(conv2(out).relu_());
  out = calibration.observe(conv3(out));
  return calibration.observe(out.add_(identity).relu_());
}

void BottleneckImpl::quantize_int8(int8::Calibration& calibration) {
  if (downsample) q_downsample_ = int8::Conv(downsample_conv(), calibration.next(), false);
  q_conv1_ = int8::Conv(conv1, calibration.next(), /*relu=*/true);
  q_conv2_ = int8::Conv(conv2, calibration.next(), /*relu=*/true);
  q_conv3_ = int8::Conv(conv3, calibration.next(), false);
  q_add_ = calibration.next();
}

torch::Tensor BottleneckImpl::forward_int8(const torch::Tensor& qx) const {
  const torch::Tensor identity = q_downsample_.defined() ? q_downsample_(qx) : qx;
  return int8::add_relu(q_conv3_(q_conv2_(q_conv1_(qx))), identity, q_add_);
}

ResNetImpl::ResNetImpl(const ResNetOptions& options) : options_(options) {
  if (options.layers.size() != options.widths.size() || options.layers.empty()) {
    throw Error("ResNet needs one width per stage");
  }
  const int64_t stem = options.widths[0];
  conv1 =
      options.small_input
          ? backbone_util::conv2d(nn::Conv2dOptions(3, stem, 3).stride(1).padding(1).bias(false))
          : backbone_util::conv2d(nn::Conv2dOptions(3, stem, 7).stride(2).padding(3).bias(false));
  register_module("conv1", conv1);
  bn1 = register_module("bn1", BatchNorm2d(stem));
  if (!options.small_input) {
    maxpool =
        register_module("maxpool", nn::MaxPool2d(nn::MaxPool2dOptions(3).stride(2).padding(1)));
  }
  const int64_t expansion =
      options.bottleneck ? BottleneckImpl::kExpansion : BasicBlockImpl::kExpansion;
  int64_t in_planes = stem;
  for (size_t s = 0; s < options.layers.size(); ++s) {
    nn::Sequential stage;
    const int64_t planes = options.widths[s];
    for (int64_t b = 0; b < options.layers[s]; ++b) {
      const int64_t stride = (b == 0 && s > 0) ? 2 : 1;
      if (options.bottleneck) {
        stage->push_back(
            Bottleneck(in_planes, planes, stride, options.groups, options.width_per_group));
      } else {
        stage->push_back(
            BasicBlock(in_planes, planes, stride, options.groups, options.width_per_group));
      }
      in_planes = planes * expansion;
    }
    stages_.push_back(register_module("layer" + std::to_string(s + 1), stage));
  }
  num_features_ = in_planes;

  // torchvision's initialisation: He-normal (fan_out) convs, BN weight 1 and bias 0.
  if (!random_init_enabled()) return;
  for (auto& module : modules(/*include_self=*/false)) {
    if (auto* conv = module->as<nn::Conv2d>()) {
      nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanOut, torch::kReLU);
    } else if (auto* bn = module->as<nn::BatchNorm2d>()) {
      nn::init::ones_(bn->weight);
      nn::init::zeros_(bn->bias);
    }
  }
}

Features ResNetImpl::forward_features(const torch::Tensor& images) {
  if (int8_) return forward_int8(images);
  torch::Tensor x = onednn_ ? images.contiguous().to_mkldnn() : images;
  x = bn_or_identity(bn1, conv1(x)).relu_();
  if (maxpool) x = maxpool(x);
  Features out;
  out.stages.reserve(stages_.size());
  for (size_t s = 0; s < stages_.size(); ++s) {
    x = after_stage(s + 1, stages_[s]->forward(x));
    out.stages.push_back(onednn_ ? x.to_dense() : x);
  }
  return out;
}

std::vector<ResidualBlockImpl*> ResNetImpl::blocks(size_t stage) const {
  std::vector<ResidualBlockImpl*> out;
  for (size_t i = 0; i < stages_[stage]->size(); ++i)
    out.push_back(stages_[stage]->ptr(i)->as<ResidualBlockImpl>());
  return out;
}

bool ResNetImpl::fold_batchnorm() {
  fold_conv_bn(*this, "conv1", conv1, "bn1", bn1);
  for (size_t s = 0; s < stages_.size(); ++s) {
    for (ResidualBlockImpl* block : blocks(s)) block->fold_batchnorm();
  }
  folded_ = true;
  return true;
}

bool ResNetImpl::observe_int8(const torch::Tensor& images, int8::Calibration& calibration) {
  // Inserted attention blocks have no int8 form; oneDNN-layout weights are not plain tensors.
  if (!folded_ || has_stage_blocks() || onednn_ || int8_) return false;
  torch::NoGradGuard no_grad;
  torch::Tensor x = calibration.observe(images);
  x = calibration.observe(conv1(x).relu_());
  if (maxpool) x = maxpool(x);  // max-pooling keeps the quantization of its input
  for (size_t s = 0; s < stages_.size(); ++s) {
    for (ResidualBlockImpl* block : blocks(s)) x = block->observe_int8(x, calibration);
  }
  return true;
}

bool ResNetImpl::quantize_int8(int8::Calibration& calibration, bool every_stage) {
  if (!folded_ || has_stage_blocks() || onednn_ || int8_) return false;
  int8::select_engine();
  torch::NoGradGuard no_grad;
  q_input_ = calibration.next();
  q_stem_ = int8::Conv(conv1, calibration.next(), /*relu=*/true);
  for (size_t s = 0; s < stages_.size(); ++s) {
    for (ResidualBlockImpl* block : blocks(s)) block->quantize_int8(calibration);
  }
  calibration.expect_consumed();
  int8_every_stage_ = every_stage;
  int8_ = true;
  return true;
}

Features ResNetImpl::forward_int8(const torch::Tensor& images) {
  torch::Tensor x = q_stem_(int8::quantize(images, q_input_));
  if (maxpool) x = maxpool(x);
  Features out;
  for (size_t s = 0; s < stages_.size(); ++s) {
    for (ResidualBlockImpl* block : blocks(s)) x = block->forward_int8(x);
    const bool wanted = int8_every_stage_ || s + 1 == stages_.size();
    out.stages.push_back(wanted ? x.dequantize() : torch::Tensor());  // heads run in fp32
  }
  return out;
}

bool ResNetImpl::use_onednn_layout() {
  // Every layer between the convolutions (ReLU, in-place residual add, max-pool) has a oneDNN
  // kernel; BatchNorm must be folded away and inserted attention blocks are plain ops.
  if (!folded_ || has_stage_blocks() || onednn_) return onednn_;
  torch::NoGradGuard no_grad;
  for (const auto& module : modules(/*include_self=*/false)) {
    auto* conv = module->as<nn::Conv2dImpl>();
    if (conv != nullptr && conv->weight.scalar_type() != torch::kFloat) return false;
  }
  for (const auto& module : modules(/*include_self=*/false)) {
    auto* conv = module->as<nn::Conv2dImpl>();
    if (conv == nullptr || conv->options.groups() != 1) continue;  // grouped: dense weights
    const auto& o = conv->options;
    torch::Tensor packed = at::mkldnn_reorder_conv2d_weight(
        conv->weight.contiguous().to_mkldnn(), *c10::get<torch::ExpandingArray<2>>(o.padding()),
        *o.stride(), *o.dilation(), o.groups());
    // The registered parameter keeps its name but drops its dense copy; forward uses the
    // member, which now holds the packed weight.
    conv->weight.set_data(torch::empty({0}));
    conv->weight = packed;
  }
  onednn_ = true;
  return true;
}

int64_t ResNetImpl::output_stride() const {
  const int64_t stem = options_.small_input ? 1 : 4;  // 7x7/2 conv + 3x3/2 max-pool
  return stem << (options_.layers.size() - 1);
}

std::vector<int64_t> ResNetImpl::stage_channels() const {
  const int64_t expansion =
      options_.bottleneck ? BottleneckImpl::kExpansion : BasicBlockImpl::kExpansion;
  std::vector<int64_t> channels;
  for (int64_t w : options_.widths) channels.push_back(w * expansion);
  return channels;
}

std::vector<std::vector<std::string>> ResNetImpl::stage_prefixes() const {
  std::vector<std::vector<std::string>> prefixes;
  for (size_t s = 0; s < stages_.size(); ++s) prefixes.push_back({"layer" + std::to_string(s + 1)});
  prefixes.front().insert(prefixes.front().begin(), {"conv1", "bn1"});
  return prefixes;
}

ResNetOptions resnet_options(const std::string& name, int64_t width) {
  const std::vector<int64_t> imagenet_widths{64, 128, 256, 512};
  const std::vector<int64_t> small_widths{width, 2 * width, 4 * width};
  if (name == "resnet18") return {false, {2, 2, 2, 2}, imagenet_widths};
  if (name == "resnet34") return {false, {3, 4, 6, 3}, imagenet_widths};
  if (name == "resnet50") return {true, {3, 4, 6, 3}, imagenet_widths};
  if (name == "resnet101") return {true, {3, 4, 23, 3}, imagenet_widths};
  if (name == "resnet152") return {true, {3, 8, 36, 3}, imagenet_widths};
  if (name == "resnext50_32x4d") return {true, {3, 4, 6, 3}, imagenet_widths, false, 32, 4};
  if (name == "wide_resnet50_2") return {true, {3, 4, 6, 3}, imagenet_widths, false, 1, 128};
  if (name == "resnet20") return {false, {3, 3, 3}, small_widths, true};
  if (name == "resnet32") return {false, {5, 5, 5}, small_widths, true};
  if (name == "resnet56") return {false, {9, 9, 9}, small_widths, true};
  throw Error("unknown ResNet variant '" + name + "'");
}

namespace {

bool register_resnets() {
  const std::vector<std::pair<const char*, const char*>> resnets = {
      {"resnet18", "ResNet-18 (He et al. 2016), torchvision's names; 11.7 M parameters"},
      {"resnet34", "ResNet-34, torchvision's names; 21.8 M parameters"},
      {"resnet50", "ResNet-50 (bottleneck blocks), torchvision's names; 25.6 M parameters"},
      {"resnet101", "ResNet-101, torchvision's names; 44.5 M parameters"},
      {"resnet152", "ResNet-152, torchvision's names; 60.2 M parameters"},
      {"resnext50_32x4d", "ResNeXt-50 32x4d (grouped convolutions), torchvision's names"},
      {"wide_resnet50_2", "Wide ResNet-50-2 (twice the bottleneck width), torchvision's names"},
      {"resnet20", "CIFAR ResNet-20 for 28-32 px images (3x3 stem, no max-pool), model.width"},
      {"resnet32", "CIFAR ResNet-32 for 28-32 px images, model.width"},
      {"resnet56", "CIFAR ResNet-56 for 28-32 px images, model.width"}};
  for (const auto& [name, description] : resnets) {
    const bool small = resnet_options(name).small_input;
    std::vector<OwnedOptions> options;
    if (small)
      options.push_back(
          {"model", "width: 16   # small-input ResNets: channels of the first stage"});
    backbones().add({name, description,
                     [name = std::string(name)](const ModelSpec& spec) {
                       return std::make_shared<ResNetImpl>(
                           resnet_options(name, spec_value<int64_t>(spec, "width", 16)));
                     },
                     options});
  }
  return true;
}

const bool kResNetsRegistered = register_resnets();

}  // namespace

}  // namespace finch::models
