// Inception-v3 with torchvision's names (Conv2d_1a_3x3.conv, Mixed_5b.branch1x1.bn,
// AuxLogits.fc, ...). Szegedy et al., "Rethinking the Inception Architecture for Computer
// Vision", CVPR 2016.
//
// The auxiliary classifier (`model.aux_logits: true`, as torchvision) runs on Mixed_6e in
// training mode only; the trainer adds train.aux_loss_weight x its cross-entropy.
// torchvision's `transform_input` (which ImageNet weights enable) re-normalises ImageNet
// mean/std input to mean = std = 0.5; finch records mean = std = 0.5 in imported model files
// instead, which is the same computation.
#include <torch/nn/init.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

#include "backbone_util.h"
#include "finch/models/batchnorm.h"
#include "finch/models/registry.h"

namespace finch::models {

namespace {

namespace nn = torch::nn;
using torch::Tensor;

// conv (no bias) + BatchNorm (eps 0.001) + ReLU.
class BasicConvImpl : public nn::Module {
 public:
  BasicConvImpl(int64_t in, int64_t out, torch::ExpandingArray<2> kernel,
                torch::ExpandingArray<2> stride = 1, torch::ExpandingArray<2> padding = 0)
      : conv(register_module(
            "conv",
            nn::Conv2d(
                nn::Conv2dOptions(in, out, kernel).stride(stride).padding(padding).bias(false)))),
        bn(register_module("bn", BatchNorm2d(nn::BatchNormOptions(out).eps(0.001)))) {}
  Tensor forward(const Tensor& x) { return bn(conv(x)).relu_(); }

  nn::Conv2d conv;
  BatchNorm2d bn;
};
TORCH_MODULE(BasicConv);

using K = torch::ExpandingArray<2>;
using P = torch::ExpandingArray<2>;
const K k1x7({1, 7}), k7x1({7, 1}), k1x3({1, 3}), k3x1({3, 1});
const P p0x3({0, 3}), p3x0({3, 0}), p0x1({0, 1}), p1x0({1, 0});

// Builds the named BasicConv children of a block in one place.
class Block : public nn::Module {
 protected:
  explicit Block(bool tf_padding = false) : tf_padding_(tf_padding) {}
  // The branch pools. torchvision averages over the padded 3x3 window (zeros count);
  // Keras' AveragePooling2D(padding="same") over the pixels inside the image only.
  Tensor avg_pool_3x3(const Tensor& x) const {
    return torch::avg_pool2d(x, 3, 1, 1, /*ceil_mode=*/false, /*count_include_pad=*/!tf_padding_);
  }
  BasicConv conv(const std::string& name, int64_t in, int64_t out, K kernel, int64_t stride = 1,
                 P padding = 0) {
    return register_module(name, BasicConv(in, out, kernel, stride, padding));
  }

 private:
  bool tf_padding_;
};

class InceptionAImpl : public Block {
 public:
  InceptionAImpl(int64_t in, int64_t pool_features, bool tf_padding) : Block(tf_padding) {
    b1 = conv("branch1x1", in, 64, 1);
    b5_1 = conv("branch5x5_1", in, 48, 1);
    b5_2 = conv("branch5x5_2", 48, 64, 5, 1, 2);
    d1 = conv("branch3x3dbl_1", in, 64, 1);
    d2 = conv("branch3x3dbl_2", 64, 96, 3, 1, 1);
    d3 = conv("branch3x3dbl_3", 96, 96, 3, 1, 1);
    pool = conv("branch_pool", in, pool_features, 1);
  }
  Tensor forward(const Tensor& x) {
    return torch::cat({b1(x), b5_2(b5_1(x)), d3(d2(d1(x))), pool(avg_pool_3x3(x))}, 1);
  }

 private:
  BasicConv b1{nullptr}, b5_1{nullptr}, b5_2{nullptr}, d1{nullptr}, d2{nullptr}, d3{nullptr},
      pool{nullptr};
};
TORCH_MODULE(InceptionA);

class InceptionBImpl : public Block {
 public:
  explicit InceptionBImpl(int64_t in) {
    b3 = conv("branch3x3", in, 384, 3, 2);
    d1 = conv("branch3x3dbl_1", in, 64, 1);
    d2 = conv("branch3x3dbl_2", 64, 96, 3, 1, 1);
    d3 = conv("branch3x3dbl_3", 96, 96, 3, 2);
  }
  Tensor forward(const Tensor& x) {
    return torch::cat({b3(x), d3(d2(d1(x))), torch::max_pool2d(x, 3, 2)}, 1);
  }

 private:
  BasicConv b3{nullptr}, d1{nullptr}, d2{nullptr}, d3{nullptr};
};
TORCH_MODULE(InceptionB);

class InceptionCImpl : public Block {
 public:
  InceptionCImpl(int64_t in, int64_t c7, bool tf_padding) : Block(tf_padding) {
    b1 = conv("branch1x1", in, 192, 1);
    s1 = conv("branch7x7_1", in, c7, 1);
    s2 = conv("branch7x7_2", c7, c7, k1x7, 1, p0x3);
    s3 = conv("branch7x7_3", c7, 192, k7x1, 1, p3x0);
    d1 = conv("branch7x7dbl_1", in, c7, 1);
    d2 = conv("branch7x7dbl_2", c7, c7, k7x1, 1, p3x0);
    d3 = conv("branch7x7dbl_3", c7, c7, k1x7, 1, p0x3);
    d4 = conv("branch7x7dbl_4", c7, c7, k7x1, 1, p3x0);
    d5 = conv("branch7x7dbl_5", c7, 192, k1x7, 1, p0x3);
    pool = conv("branch_pool", in, 192, 1);
  }
  Tensor forward(const Tensor& x) {
    return torch::cat({b1(x), s3(s2(s1(x))), d5(d4(d3(d2(d1(x))))), pool(avg_pool_3x3(x))}, 1);
  }

 private:
  BasicConv b1{nullptr}, s1{nullptr}, s2{nullptr}, s3{nullptr}, d1{nullptr}, d2{nullptr},
      d3{nullptr}, d4{nullptr}, d5{nullptr}, pool{nullptr};
};
TORCH_MODULE(InceptionC);

class InceptionDImpl : public Block {
 public:
  explicit InceptionDImpl(int64_t in) {
    t1 = conv("branch3x3_1", in, 192, 1);
    t2 = conv("branch3x3_2", 192, 320, 3, 2);
    s1 = conv("branch7x7x3_1", in, 192, 1);
    s2 = conv("branch7x7x3_2", 192, 192, k1x7, 1, p0x3);
    s3 = conv("branch7x7x3_3", 192, 192, k7x1, 1, p3x0);
    s4 = conv("branch7x7x3_4", 192, 192, 3, 2);
  }
  Tensor forward(const Tensor& x) {
    return torch::cat({t2(t1(x)), s4(s3(s2(s1(x)))), torch::max_pool2d(x, 3, 2)}, 1);
  }

 private:
  BasicConv t1{nullptr}, t2{nullptr}, s1{nullptr}, s2{nullptr}, s3{nullptr}, s4{nullptr};
};
TORCH_MODULE(InceptionD);

class InceptionEImpl : public Block {
 public:
  InceptionEImpl(int64_t in, bool tf_padding) : Block(tf_padding) {
    b1 = conv("branch1x1", in, 320, 1);
    t1 = conv("branch3x3_1", in, 384, 1);
    t2a = conv("branch3x3_2a", 384, 384, k1x3, 1, p0x1);
    t2b = conv("branch3x3_2b", 384, 384, k3x1, 1, p1x0);
    d1 = conv("branch3x3dbl_1", in, 448, 1);
    d2 = conv("branch3x3dbl_2", 448, 384, 3, 1, 1);
    d3a = conv("branch3x3dbl_3a", 384, 384, k1x3, 1, p0x1);
    d3b = conv("branch3x3dbl_3b", 384, 384, k3x1, 1, p1x0);
    pool = conv("branch_pool", in, 192, 1);
  }
  Tensor forward(const Tensor& x) {
    Tensor t = t1(x), d = d2(d1(x));
    return torch::cat({b1(x), torch::cat({t2a(t), t2b(t)}, 1), torch::cat({d3a(d), d3b(d)}, 1),
                       pool(avg_pool_3x3(x))},
                      1);
  }

 private:
  BasicConv b1{nullptr}, t1{nullptr}, t2a{nullptr}, t2b{nullptr}, d1{nullptr}, d2{nullptr},
      d3a{nullptr}, d3b{nullptr}, pool{nullptr};
};
TORCH_MODULE(InceptionE);

class InceptionAuxImpl : public Block {
 public:
  InceptionAuxImpl(int64_t in, int64_t num_classes) {
    conv0 = conv("conv0", in, 128, 1);
    conv1 = conv("conv1", 128, 768, 5);
    fc = register_module("fc", nn::Linear(768, num_classes));
  }
  Tensor forward(const Tensor& x) {
    Tensor y = conv1(conv0(torch::avg_pool2d(x, 5, 3)));
    return fc(torch::adaptive_avg_pool2d(y, {1, 1}).flatten(1));
  }

  BasicConv conv0{nullptr}, conv1{nullptr};
  nn::Linear fc{nullptr};
};
TORCH_MODULE(InceptionAux);

class InceptionV3Impl : public BackboneImpl {
 public:
  InceptionV3Impl(int64_t num_classes, bool aux_logits, bool tf_padding) {
    c1a = reg("Conv2d_1a_3x3", BasicConv(3, 32, 3, 2));
    c2a = reg("Conv2d_2a_3x3", BasicConv(32, 32, 3));
    c2b = reg("Conv2d_2b_3x3", BasicConv(32, 64, 3, 1, 1));
    c3b = reg("Conv2d_3b_1x1", BasicConv(64, 80, 1));
    c4a = reg("Conv2d_4a_3x3", BasicConv(80, 192, 3));
    m5b = reg("Mixed_5b", InceptionA(192, 32, tf_padding));
    m5c = reg("Mixed_5c", InceptionA(256, 64, tf_padding));
    m5d = reg("Mixed_5d", InceptionA(288, 64, tf_padding));
    m6a = reg("Mixed_6a", InceptionB(288));
    m6b = reg("Mixed_6b", InceptionC(768, 128, tf_padding));
    m6c = reg("Mixed_6c", InceptionC(768, 160, tf_padding));
    m6d = reg("Mixed_6d", InceptionC(768, 160, tf_padding));
    m6e = reg("Mixed_6e", InceptionC(768, 192, tf_padding));
    if (aux_logits) aux = reg("AuxLogits", InceptionAux(768, num_classes));
    m7a = reg("Mixed_7a", InceptionD(768));
    m7b = reg("Mixed_7b", InceptionE(1280, tf_padding));
    m7c = reg("Mixed_7c", InceptionE(2048, tf_padding));
    // torchvision: truncated normal (std 0.1; 0.01 / 0.001 in the auxiliary classifier,
    // truncated at +-2, which at these widths is plain normal), BN weight 1 and bias 0.
    if (!random_init_enabled()) return;
    for (auto& module : modules(/*include_self=*/false)) {
      if (auto* c = module->as<nn::Conv2d>()) {
        nn::init::normal_(c->weight, 0.0, 0.1);
      } else if (auto* l = module->as<nn::Linear>()) {
        nn::init::normal_(l->weight, 0.0, 0.1);
      } else if (auto* bn = module->as<nn::BatchNorm2d>()) {
        nn::init::ones_(bn->weight);
        nn::init::zeros_(bn->bias);
      }
    }
    if (aux) {
      nn::init::normal_(aux->conv1->conv->weight, 0.0, 0.01);
      nn::init::normal_(aux->fc->weight, 0.0, 0.001);
    }
  }

  Features forward_features(const Tensor& images) override {
    Features out;
    Tensor x = after_stage(1, c2b(c2a(c1a(images))));
    out.stages.push_back(x);
    x = after_stage(2, c4a(c3b(torch::max_pool2d(x, 3, 2))));
    out.stages.push_back(x);
    x = after_stage(3, m5d(m5c(m5b(torch::max_pool2d(x, 3, 2)))));
    out.stages.push_back(x);
    x = after_stage(4, m6e(m6d(m6c(m6b(m6a(x))))));
    out.stages.push_back(x);
    if (aux && is_training()) out.aux_logits = aux(x);
    out.stages.push_back(after_stage(5, m7c(m7b(m7a(x)))));
    return out;
  }

  int64_t num_features() const override { return 2048; }
  std::vector<int64_t> stage_channels() const override { return {64, 192, 288, 768, 2048}; }
  std::vector<std::vector<std::string>> stage_prefixes() const override {
    return {{"Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3"},
            {"Conv2d_3b_1x1", "Conv2d_4a_3x3"},
            {"Mixed_5b", "Mixed_5c", "Mixed_5d"},
            {"Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e", "AuxLogits"},
            {"Mixed_7a", "Mixed_7b", "Mixed_7c"}};
  }
  std::vector<std::string> class_dependent_tensors() const override {
    return {"AuxLogits.fc.weight", "AuxLogits.fc.bias"};
  }

 private:
  template <typename M>
  M reg(const std::string& name, M module) {
    return register_module(name, std::move(module));
  }

  BasicConv c1a{nullptr}, c2a{nullptr}, c2b{nullptr}, c3b{nullptr}, c4a{nullptr};
  InceptionA m5b{nullptr}, m5c{nullptr}, m5d{nullptr};
  InceptionB m6a{nullptr};
  InceptionC m6b{nullptr}, m6c{nullptr}, m6d{nullptr}, m6e{nullptr};
  InceptionAux aux{nullptr};
  InceptionD m7a{nullptr};
  InceptionE m7b{nullptr}, m7c{nullptr};
};

FINCH_REGISTER_BACKBONE(
    {"inception_v3",
     "Inception-v3 (Szegedy et al. 2016) for 299 px, torchvision's names",
     [](const ModelSpec& spec) {
       return std::make_shared<InceptionV3Impl>(spec_value<int64_t>(spec, "num_classes", 1000),
                                                spec_value<bool>(spec, "aux_logits", true),
                                                spec_value<bool>(spec, "tf_padding", false));
     },
     {{"model", "aux_logits: true   # inception_v3: auxiliary classifier on Mixed_6e in training"},
      {"model", backbone_util::kTfPaddingOption}}});

}  // namespace

}  // namespace finch::models
