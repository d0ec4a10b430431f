#include "finch/export/onnx.h"

#include <fmt/format.h>
#include <onnx/checker.h>
#include <onnx/onnx_pb.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/modules/pooling.h>

#include <map>
#include <set>

#include "finch/core/atomic_file.h"
#include "finch/core/error.h"
#include "finch/models/heads/bilinear.h"
#include "finch/models/inference.h"
// The mobile family's units, read through their accessors (an internal header of the backbones).
#include "../models/backbones/mobile_blocks.h"

namespace finch::exporting {

namespace {

namespace nn = torch::nn;
using ModulePtr = std::shared_ptr<nn::Module>;

// Builds one onnx::GraphProto: tensors are named by the module path they come from, so the
// graph reads like the torchvision model (backbone.layer1.0.conv1 ...).
class GraphWriter {
 public:
  explicit GraphWriter(onnx::GraphProto& graph) : graph_(graph) {}

  std::string initializer(const std::string& name, const torch::Tensor& value) {
    if (!initializers_.insert(name).second) return name;  // shared weights (CBAM's MLP)
    torch::Tensor t = value.detach().to(torch::kFloat).contiguous();
    auto* init = graph_.add_initializer();
    init->set_name(name);
    init->set_data_type(onnx::TensorProto::FLOAT);
    for (int64_t d : t.sizes()) init->add_dims(d);
    init->set_raw_data(t.data_ptr(), static_cast<size_t>(t.numel()) * sizeof(float));
    return name;
  }

  onnx::NodeProto& node(const std::string& op, const std::vector<std::string>& inputs,
                        const std::string& output) {
    auto* n = graph_.add_node();
    n->set_op_type(op);
    n->set_name(output);
    for (const auto& i : inputs) n->add_input(i);
    n->add_output(output);
    return *n;
  }

  static void ints(onnx::NodeProto& n, const std::string& name, const std::vector<int64_t>& v) {
    auto* a = n.add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INTS);
    for (int64_t x : v) a->add_ints(x);
  }
  static void integer(onnx::NodeProto& n, const std::string& name, int64_t v) {
    auto* a = n.add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(v);
  }
  static void real(onnx::NodeProto& n, const std::string& name, float v) {
    auto* a = n.add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::FLOAT);
    a->set_f(v);
  }

  // conv (+ the BatchNorm after it, folded) -> one Conv node with weights `name`.weight/.bias,
  // output `out` (default: `name`; another output reuses the same weights).
  std::string conv(const std::string& x, const std::string& name, const nn::Conv2d& conv,
                   const nn::BatchNorm2d& bn = nullptr, const std::string& out = "") {
    nn::Conv2d c = bn ? models::fold_batchnorm(conv, bn) : conv;
    const auto& o = c->options;
    if (!c10::holds_alternative<torch::ExpandingArray<2>>(o.padding()))
      throw Error("ONNX export: " + name + " uses string padding, which is not supported");
    const auto pad = c10::get<torch::ExpandingArray<2>>(o.padding());
    std::vector<std::string> inputs{x, initializer(name + ".weight", c->weight)};
    if (c->bias.defined()) inputs.push_back(initializer(name + ".bias", c->bias));
    auto& n = node("Conv", inputs, out.empty() ? name : out);
    ints(n, "kernel_shape", {(*o.kernel_size())[0], (*o.kernel_size())[1]});
    ints(n, "strides", {(*o.stride())[0], (*o.stride())[1]});
    ints(n, "pads", {(*pad)[0], (*pad)[1], (*pad)[0], (*pad)[1]});
    ints(n, "dilations", {(*o.dilation())[0], (*o.dilation())[1]});
    integer(n, "group", o.groups());
    return out.empty() ? name : out;
  }

  onnx::TensorProto* raw_initializer(const std::string& name) {
    initializers_.insert(name);
    auto* init = graph_.add_initializer();
    init->set_name(name);
    return init;
  }

  // A constant int64 vector (shapes, axes, indices); a scalar when `scalar`.
  std::string ints_constant(const std::string& name, const std::vector<int64_t>& values,
                            bool scalar = false) {
    if (initializers_.count(name)) return name;
    auto* init = raw_initializer(name);
    init->set_data_type(onnx::TensorProto::INT64);
    if (!scalar) init->add_dims(static_cast<int64_t>(values.size()));
    for (int64_t v : values) init->add_int64_data(v);
    return name;
  }

  std::string relu(const std::string& x) { return unary("Relu", x, x + ".relu"); }
  std::string unary(const std::string& op, const std::string& x, const std::string& out) {
    node(op, {x}, out);
    return out;
  }

  std::string max_pool(const std::string& x, const std::string& name, int64_t kernel,
                       int64_t stride, int64_t padding) {
    auto& n = node("MaxPool", {x}, name);
    ints(n, "kernel_shape", {kernel, kernel});
    ints(n, "strides", {stride, stride});
    ints(n, "pads", {padding, padding, padding, padding});
    return name;
  }

  // y = x W^T + b (torch.nn.Linear).
  std::string linear(const std::string& x, const std::string& name, const nn::Linear& fc) {
    std::vector<std::string> inputs{x, initializer(name + ".weight", fc->weight)};
    if (fc->bias.defined()) inputs.push_back(initializer(name + ".bias", fc->bias));
    auto& n = node("Gemm", inputs, name);
    integer(n, "transB", 1);
    return name;
  }

  std::string global_average(const std::string& x, const std::string& name) {
    node("GlobalAveragePool", {x}, name + ".pool");
    auto& flat = node("Flatten", {name + ".pool"}, name);
    integer(flat, "axis", 1);
    return name;
  }

 private:
  onnx::GraphProto& graph_;
  std::set<std::string> initializers_;
};

std::map<std::string, ModulePtr> children(const nn::Module& module) {
  std::map<std::string, ModulePtr> out;
  for (const auto& item : module.named_children()) out[item.key()] = item.value();
  return out;
}

template <typename Impl>
std::shared_ptr<Impl> child(const std::map<std::string, ModulePtr>& kids, const std::string& name) {
  auto it = kids.find(name);
  return it == kids.end() ? nullptr : std::dynamic_pointer_cast<Impl>(it->second);
}

// The SE / CBAM block inserted after stage `stage` (backbone.attention.<stage>), if any:
// x + gamma * (attend(x) - x), as GatedBlock computes it.
std::string stage_block(GraphWriter& g, const std::map<std::string, ModulePtr>& backbone_kids,
                        size_t stage, const std::string& x) {
  auto holder = backbone_kids.find("attention");
  if (holder == backbone_kids.end()) return x;
  auto blocks = children(*holder->second);
  auto it = blocks.find(std::to_string(stage));
  if (it == blocks.end()) return x;
  const std::string name = "backbone.attention." + std::to_string(stage);
  auto parts = children(*it->second);
  auto mlp = children(*parts.at("mlp"));
  // The shared MLP on a pooled [B, C, 1, 1] map (CBAM runs it twice on the same weights).
  auto channel_mlp = [&](const std::string& pooled) {
    std::string h = g.relu(g.conv(pooled, name + ".mlp.fc1", child<nn::Conv2dImpl>(mlp, "fc1"),
                                  nullptr, pooled + ".fc1"));
    return g.conv(h, name + ".mlp.fc2", child<nn::Conv2dImpl>(mlp, "fc2"), nullptr,
                  pooled + ".fc2");
  };
  if (auto spatial = child<nn::Conv2dImpl>(parts, "spatial")) {  // CBAM
    g.node("GlobalAveragePool", {x}, name + ".avg");
    g.node("GlobalMaxPool", {x}, name + ".max");
    g.node("Add", {channel_mlp(name + ".avg"), channel_mlp(name + ".max")},
           name + ".channel_logits");
    g.unary("Sigmoid", name + ".channel_logits", name + ".channel");
    g.node("Mul", {x, name + ".channel"}, name + ".y");
    auto& mean = g.node("ReduceMean", {name + ".y"}, name + ".mean");
    GraphWriter::ints(mean, "axes", {1});
    GraphWriter::integer(mean, "keepdims", 1);
    auto& maxc = g.node("ReduceMax", {name + ".y"}, name + ".maxc");
    GraphWriter::ints(maxc, "axes", {1});
    GraphWriter::integer(maxc, "keepdims", 1);
    auto& cat = g.node("Concat", {name + ".mean", name + ".maxc"}, name + ".pooled");
    GraphWriter::integer(cat, "axis", 1);
    g.conv(name + ".pooled", name + ".spatial", nn::Conv2d(spatial));
    g.unary("Sigmoid", name + ".spatial", name + ".spatial_gate");
    g.node("Mul", {name + ".y", name + ".spatial_gate"}, name + ".attended");
  } else {  // squeeze-and-excitation
    g.node("GlobalAveragePool", {x}, name + ".avg");
    g.unary("Sigmoid", channel_mlp(name + ".avg"), name + ".gate");
    g.node("Mul", {x, name + ".gate"}, name + ".attended");
  }
  torch::Tensor gamma = it->second->named_parameters(false)["gamma"];
  g.node("Sub", {name + ".attended", x}, name + ".delta");
  g.node("Mul", {name + ".delta", g.initializer(name + ".gamma", gamma)}, name + ".scaled");
  g.node("Add", {x, name + ".scaled"}, name);
  return name;
}

// What a backbone writer leaves: the last stage's map, and how to write the pooled embedding
// torchvision's classifier sees (written only when the head asks for it).
struct BackboneGraph {
  std::string last_stage;
  std::function<std::string()> embed;
};

// ResNet / ResNeXt / Wide-ResNet / CIFAR ResNets: the stem, then every block of every stage
// (conv-bn-relu ... conv-bn, + identity or downsample, relu), then the global average.
BackboneGraph write_resnet(GraphWriter& g, const nn::Module& backbone, std::string x) {
  auto kids = children(backbone);
  x = g.relu(g.conv(x, "backbone.conv1", child<nn::Conv2dImpl>(kids, "conv1"),
                    child<nn::BatchNorm2dImpl>(kids, "bn1")));
  if (kids.count("maxpool")) x = g.max_pool(x, "backbone.maxpool", 3, 2, 1);
  for (int stage = 1; kids.count("layer" + std::to_string(stage)); ++stage) {
    const std::string stage_name = "backbone.layer" + std::to_string(stage);
    auto blocks = child<nn::SequentialImpl>(kids, "layer" + std::to_string(stage));
    for (size_t b = 0; b < blocks->size(); ++b) {
      const std::string name = stage_name + "." + std::to_string(b);
      auto parts = children(*blocks->ptr(b));
      std::string h = x;
      const int convs = parts.count("conv3") ? 3 : 2;
      for (int k = 1; k <= convs; ++k) {
        const std::string id = std::to_string(k);
        h = g.conv(h, name + ".conv" + id, child<nn::Conv2dImpl>(parts, "conv" + id),
                   child<nn::BatchNorm2dImpl>(parts, "bn" + id));
        if (k < convs) h = g.relu(h);
      }
      std::string identity = x;
      if (auto down = child<nn::SequentialImpl>(parts, "downsample")) {
        auto conv = std::dynamic_pointer_cast<nn::Conv2dImpl>(down->ptr(0));
        auto bn = down->size() > 1 ? std::dynamic_pointer_cast<nn::BatchNorm2dImpl>(down->ptr(1))
                                   : nullptr;
        identity = g.conv(x, name + ".downsample", conv, bn);
      }
      g.node("Add", {h, identity}, name + ".add");
      x = g.relu(name + ".add");
    }
    x = stage_block(g, kids, static_cast<size_t>(stage), x);
  }
  return {x, [&g, x] { return g.global_average(x, "backbone.embedding"); }};
}

// VGG: features (conv [bn] relu ... maxpool), then embed(): pool5, the 7 x 7 adaptive
// average and fc6 / fc7 (or, with model.vgg_fc false, the global average of conv5).
BackboneGraph write_vgg(GraphWriter& g, const nn::Module& backbone, std::string x,
                        int64_t input_size, bool with_fc) {
  auto kids = children(backbone);
  auto features = child<nn::SequentialImpl>(kids, "features");
  const size_t n = features->size();
  size_t pools = 0;
  for (size_t i = 0; i < n; ++i)
    if (features->ptr(i)->as<nn::MaxPool2d>()) ++pools;
  size_t seen_pools = 0;
  for (size_t i = 0; i < n; ++i) {
    const std::string name = "backbone.features." + std::to_string(i);
    ModulePtr m = features->ptr(i);
    if (auto conv = std::dynamic_pointer_cast<nn::Conv2dImpl>(m)) {
      nn::BatchNorm2d bn = nullptr;
      if (i + 1 < n)
        bn = nn::BatchNorm2d(std::dynamic_pointer_cast<nn::BatchNorm2dImpl>(features->ptr(i + 1)));
      x = g.conv(x, name, nn::Conv2d(conv), bn);
      if (bn) ++i;
    } else if (m->as<nn::ReLU>()) {
      x = g.relu(x);
    } else if (m->as<nn::MaxPool2d>()) {
      x = stage_block(g, kids, ++seen_pools, x);  // a stage ends before its pool
      if (seen_pools == pools) break;             // pool5 belongs to embed()
      x = g.max_pool(x, name, 2, 2, 0);
    } else {
      throw Error("ONNX export: unexpected layer " + name + " in a VGG backbone");
    }
  }
  const std::string last_stage = x;
  auto embed = [&g, x, input_size, with_fc,
                classifier = child<nn::SequentialImpl>(kids, "classifier")]() mutable {
    if (!with_fc) return g.global_average(x, "backbone.embedding");
    x = g.max_pool(x, "backbone.pool5", 2, 2, 0);
    const int64_t side = input_size / 32;
    if (input_size % 32 != 0 || side % 7 != 0)
      throw Error(fmt::format(
          "ONNX export: VGG's 7 x 7 adaptive average pool is a fixed pooling only when the input "
          "side is a multiple of 224 (this model takes {} px)",
          input_size));
    if (side != 7) {
      auto& pool = g.node("AveragePool", {x}, "backbone.avgpool");
      GraphWriter::ints(pool, "kernel_shape", {side / 7, side / 7});
      GraphWriter::ints(pool, "strides", {side / 7, side / 7});
      x = "backbone.avgpool";
    }
    auto& flat = g.node("Flatten", {x}, "backbone.flatten");
    GraphWriter::integer(flat, "axis", 1);
    x = "backbone.flatten";
    for (size_t i = 0; i < classifier->size(); ++i) {
      ModulePtr m = classifier->ptr(i);
      if (auto fc = std::dynamic_pointer_cast<nn::LinearImpl>(m))
        x = g.linear(x, "backbone.classifier." + std::to_string(i), nn::Linear(fc));
      else if (m->as<nn::ReLU>())
        x = g.relu(x);
      // Dropout: the identity at inference.
    }
    return x;
  };
  return {last_stage, embed};
}

// MobileNetV2 / V3 and EfficientNet (models/backbones/mobile_blocks.h): features.<i> units of
// conv-BN-activation and inverted residuals (expand, depthwise, squeeze-excitation, linear
// projection, + input), then the global average (MobileNetV3: and classifier.0 + Hardswish).
class MobileWriter {
 public:
  MobileWriter(GraphWriter& g, const models::mobile::MobileBackboneImpl& backbone)
      : g_(g), backbone_(backbone), kids_(children(backbone)) {}

  BackboneGraph write(std::string x) {
    const auto& units = backbone_.units();
    const auto& ends = backbone_.stage_ends();
    size_t stage = 0;
    for (size_t i = 0; i < units.size(); ++i) {
      const std::string name = "backbone.features." + std::to_string(i);
      const auto* unit = units[i].get();
      if (auto* conv = dynamic_cast<const models::mobile::ConvBnActImpl*>(unit)) {
        x = conv_bn_act(x, name, *conv);
      } else if (auto* block = dynamic_cast<const models::mobile::InvertedResidualImpl*>(unit)) {
        x = inverted_residual(x, name, *block);
      } else if (auto* seq = dynamic_cast<const models::mobile::BlockSequenceImpl*>(unit)) {
        for (size_t b = 0; b < seq->blocks().size(); ++b)
          x = inverted_residual(x, name + "." + std::to_string(b), *seq->blocks()[b]);
      } else {
        throw Error("ONNX export: unexpected unit " + name + " in a mobile backbone");
      }
      if (stage < ends.size() && i == ends[stage]) x = stage_block(g_, kids_, ++stage, x);
    }
    GraphWriter* g = &g_;
    auto classifier = child<nn::SequentialImpl>(kids_, "classifier");  // MobileNetV3
    return {x, [g, x, classifier] {
              std::string e = g->global_average(x, "backbone.pooled");
              if (!classifier) return e;
              auto fc = std::dynamic_pointer_cast<nn::LinearImpl>(classifier->ptr(0));
              e = g->linear(e, "backbone.classifier.0", nn::Linear(fc));
              return activate(*g, e, models::mobile::Activation::kHardswish, "backbone.embedding");
            }};
  }

  // torch's activations in ONNX opset 11 operators (HardSwish itself needs opset 14).
  static std::string activate(GraphWriter& g, const std::string& x, models::mobile::Activation a,
                              const std::string& name) {
    using models::mobile::Activation;
    auto hard_sigmoid = [&](const std::string& out) {  // relu6(x + 3) / 6
      auto& n = g.node("HardSigmoid", {x}, out);
      GraphWriter::real(n, "alpha", 1.0f / 6.0f);
      GraphWriter::real(n, "beta", 0.5f);
      return out;
    };
    switch (a) {
      case Activation::kNone:
        return x;
      case Activation::kReLU:
        return g.unary("Relu", x, name + ".relu");
      case Activation::kReLU6:
        g.node("Clip",
               {x, g.initializer(name + ".min", torch::tensor(0.0f)),
                g.initializer(name + ".max", torch::tensor(6.0f))},
               name + ".relu6");
        return name + ".relu6";
      case Activation::kHardswish:
        g.node("Mul", {x, hard_sigmoid(name + ".hardsigmoid")}, name + ".hardswish");
        return name + ".hardswish";
      case Activation::kSiLU:
        g.node("Mul", {x, g.unary("Sigmoid", x, name + ".sigmoid")}, name + ".silu");
        return name + ".silu";
      case Activation::kSigmoid:
        return g.unary("Sigmoid", x, name + ".sigmoid");
      case Activation::kHardsigmoid:
        return hard_sigmoid(name + ".hardsigmoid");
    }
    return x;
  }

 private:
  static nn::BatchNorm2d torch_bn(const models::BatchNorm2d& bn) {
    return bn ? nn::BatchNorm2d(std::static_pointer_cast<nn::BatchNorm2dImpl>(bn.ptr())) : nullptr;
  }

  std::string conv_bn_act(std::string x, const std::string& name,
                          const models::mobile::ConvBnActImpl& unit) {
    if (const int64_t p = unit.tf_pad(); p > 0) {  // model.tf_padding: right and bottom only
      g_.node("Pad", {x, g_.ints_constant(name + ".pads", {0, 0, 0, 0, 0, 0, p, p})},
              name + ".pad");
      x = name + ".pad";
    }
    x = g_.conv(x, name + ".0", unit.conv(), torch_bn(unit.bn()));
    return activate(g_, x, unit.activation(), name);
  }

  std::string inverted_residual(const std::string& input, const std::string& name,
                                const models::mobile::InvertedResidualImpl& block) {
    // Children under "conv" (MobileNetV2) or "block" (V3, EfficientNet), numbered in order.
    const std::string body = name + (block.project_conv() ? ".conv" : ".block");
    int index = 0;
    auto next = [&] { return body + "." + std::to_string(index++); };
    std::string x = input;
    if (block.expand()) x = conv_bn_act(x, next(), *block.expand());
    x = conv_bn_act(x, next(), *block.depthwise());
    if (const auto& se = block.se()) {
      const std::string se_name = next();
      g_.node("GlobalAveragePool", {x}, se_name + ".avg");
      std::string s = g_.conv(se_name + ".avg", se_name + ".fc1", se->fc1());
      s = activate(g_, s, se->activation(), se_name + ".fc1");
      s = g_.conv(s, se_name + ".fc2", se->fc2());
      s = activate(g_, s, se->scale_activation(), se_name + ".scale");
      g_.node("Mul", {x, s}, se_name);
      x = se_name;
    }
    if (block.project()) {
      x = conv_bn_act(x, next(), *block.project());
    } else {
      const std::string conv_name = next();
      index++;  // the BatchNorm's index, folded into the conv
      x = g_.conv(x, conv_name, block.project_conv(), torch_bn(block.project_bn()));
    }
    if (!block.residual()) return x;
    g_.node("Add", {x, input}, name + ".add");
    return name + ".add";
  }

  GraphWriter& g_;
  const models::mobile::MobileBackboneImpl& backbone_;
  std::map<std::string, ModulePtr> kids_;
};

// B-CNN (heads/bilinear.cpp): optional 1x1 reduction (+BN, ReLU), X X^T / (h w), signed square
// root sign(z) sqrt(|z| + 1e-8), L2 normalisation. `shape` is the last stage's [1, C, h, w].
std::string write_bilinear(GraphWriter& g, const std::map<std::string, ModulePtr>& head,
                           std::string x, const std::vector<int64_t>& shape) {
  int64_t c = shape.at(1);
  const int64_t n = shape.at(2) * shape.at(3);
  if (auto reduce = child<nn::Conv2dImpl>(head, "reduce")) {
    x = g.relu(g.conv(x, "head.reduce", nn::Conv2d(reduce),
                      nn::BatchNorm2d(child<nn::BatchNorm2dImpl>(head, "reduce_bn"))));
    c = reduce->options.out_channels();
  }
  g.node("Reshape", {x, g.ints_constant("head.flat_shape", {0, c, n})}, "head.flat");
  auto& t = g.node("Transpose", {"head.flat"}, "head.flat_t");
  GraphWriter::ints(t, "perm", {0, 2, 1});
  g.node("MatMul", {"head.flat", "head.flat_t"}, "head.outer");
  g.node("Div", {"head.outer", g.initializer("head.positions", torch::full({1}, double(n)))},
         "head.mean_outer");
  g.node("Reshape", {"head.mean_outer", g.ints_constant("head.pooled_shape", {0, c * c})},
         "head.pooled");
  g.unary("Sign", "head.pooled", "head.sign");
  g.unary("Abs", "head.pooled", "head.abs");
  g.node("Add", {"head.abs", g.initializer("head.eps", torch::full({1}, 1e-8))}, "head.abs_eps");
  g.unary("Sqrt", "head.abs_eps", "head.sqrt");
  g.node("Mul", {"head.sign", "head.sqrt"}, "head.signed_sqrt");
  auto& norm = g.node("LpNormalization", {"head.signed_sqrt"}, "head.embedding");
  GraphWriter::integer(norm, "axis", 1);
  GraphWriter::integer(norm, "p", 2);
  return "head.embedding";
}

// The self_attention head (heads/self_attention.cpp) at the model's input size: 1x1 token
// projection, class token, position embedding, pre-norm encoder layers (LayerNorm, multi-head
// softmax(Q K^T / sqrt(dk)) V, exact GELU MLP), LayerNorm of the class token.
class SelfAttentionWriter {
 public:
  SelfAttentionWriter(GraphWriter& g, const nn::Module& head, int64_t heads)
      : g_(g), head_(head), heads_(heads) {}

  // `x`: the last stage's map; `shape` its [1, C, h, w].
  std::string write(const std::string& x, const std::vector<int64_t>& shape) {
    auto kids = children(head_);
    auto params = head_.named_parameters(false);
    const int64_t n = shape.at(2) * shape.at(3), d = params["cls_token"].size(2);
    torch::Tensor pos = params["pos_embed"];
    if (pos.size(1) != 1 + n)
      throw Error(fmt::format(
          "ONNX export: the self_attention head learned a {}-position grid but the model's input "
          "size gives {} positions",
          pos.size(1) - 1, n));
    g_.conv(x, "head.tokens", child<nn::Conv2dImpl>(kids, "tokens"));
    g_.node("Reshape", {"head.tokens", g_.ints_constant("head.map_shape", {0, d, n})}, "head.map");
    auto& t = g_.node("Transpose", {"head.map"}, "head.positions");
    GraphWriter::ints(t, "perm", {0, 2, 1});
    // The class token for every image of the batch: 0 x the first position + the token (exact,
    // and no shape arithmetic for a dynamic batch).
    g_.node("Slice",
            {"head.positions", g_.ints_constant("head.zero1", {0}),
             g_.ints_constant("head.one1", {1}), g_.ints_constant("head.axis1", {1})},
            "head.first");
    g_.node("Mul", {"head.first", g_.initializer("head.zero", torch::zeros({1}))}, "head.zeros");
    g_.node("Add", {"head.zeros", g_.initializer("head.cls_token", params["cls_token"])},
            "head.cls");
    auto& cat = g_.node("Concat", {"head.cls", "head.positions"}, "head.sequence");
    GraphWriter::integer(cat, "axis", 1);
    std::string h = "head.x0";
    g_.node("Add", {"head.sequence", g_.initializer("head.pos_embed", pos)}, h);
    auto layers = children(*kids.at("layers"));
    for (size_t l = 0; l < layers.size(); ++l)
      h = encoder_layer("head.layers." + std::to_string(l), *layers.at(std::to_string(l)), h, 1 + n,
                        d);
    auto& cls = g_.node("Gather", {h, g_.ints_constant("head.index0", {0}, true)}, "head.cls_out");
    GraphWriter::integer(cls, "axis", 1);
    return layer_norm("head.norm", child<nn::LayerNormImpl>(kids, "norm"), "head.cls_out");
  }

 private:
  std::string linear(const std::string& x, const std::string& name, const nn::Linear& fc) {
    g_.node("MatMul", {x, g_.initializer(name + ".weight_t", fc->weight.t())}, name + ".matmul");
    g_.node("Add", {name + ".matmul", g_.initializer(name + ".bias", fc->bias)}, name);
    return name;
  }

  std::string layer_norm(const std::string& name, const std::shared_ptr<nn::LayerNormImpl>& ln,
                         const std::string& x) {
    auto mean = [&](const std::string& in, const std::string& out) {
      auto& r = g_.node("ReduceMean", {in}, out);
      GraphWriter::ints(r, "axes", {-1});
      GraphWriter::integer(r, "keepdims", 1);
    };
    mean(x, name + ".mean");
    g_.node("Sub", {x, name + ".mean"}, name + ".centred");
    g_.node("Mul", {name + ".centred", name + ".centred"}, name + ".squares");
    mean(name + ".squares", name + ".var");
    g_.node("Add",
            {name + ".var", g_.initializer(name + ".eps", torch::full({1}, ln->options.eps()))},
            name + ".var_eps");
    g_.unary("Sqrt", name + ".var_eps", name + ".std");
    g_.node("Div", {name + ".centred", name + ".std"}, name + ".normalized");
    g_.node("Mul", {name + ".normalized", g_.initializer(name + ".weight", ln->weight)},
            name + ".scaled");
    g_.node("Add", {name + ".scaled", g_.initializer(name + ".bias", ln->bias)}, name);
    return name;
  }

  std::string encoder_layer(const std::string& name, const nn::Module& layer, const std::string& x,
                            int64_t n, int64_t d) {
    auto kids = children(layer);
    const int64_t heads = heads_;
    const int64_t dk = d / heads;
    std::string h = layer_norm(name + ".norm1", child<nn::LayerNormImpl>(kids, "norm1"), x);
    h = linear(h, name + ".qkv", nn::Linear(child<nn::LinearImpl>(kids, "qkv")));
    g_.node("Reshape", {h, g_.ints_constant(name + ".qkv_shape", {0, n, 3, heads, dk})},
            name + ".qkv_heads");
    auto& perm = g_.node("Transpose", {name + ".qkv_heads"}, name + ".qkv_t");
    GraphWriter::ints(perm, "perm", {2, 0, 3, 1, 4});
    const char* parts[] = {"q", "k", "v"};
    for (int64_t i = 0; i < 3; ++i) {
      auto& gather = g_.node(
          "Gather",
          {name + ".qkv_t", g_.ints_constant(name + ".index" + std::to_string(i), {i}, true)},
          name + "." + parts[i]);
      GraphWriter::integer(gather, "axis", 0);
    }
    auto& kt = g_.node("Transpose", {name + ".k"}, name + ".k_t");
    GraphWriter::ints(kt, "perm", {0, 1, 3, 2});
    g_.node("MatMul", {name + ".q", name + ".k_t"}, name + ".scores_raw");
    g_.node(
        "Div",
        {name + ".scores_raw",
         g_.initializer(name + ".sqrt_dk", torch::full({1}, std::sqrt(static_cast<double>(dk))))},
        name + ".scores");
    auto& softmax = g_.node("Softmax", {name + ".scores"}, name + ".weights");
    GraphWriter::integer(softmax, "axis", -1);
    g_.node("MatMul", {name + ".weights", name + ".v"}, name + ".attended_heads");
    auto& back = g_.node("Transpose", {name + ".attended_heads"}, name + ".attended_t");
    GraphWriter::ints(back, "perm", {0, 2, 1, 3});
    g_.node("Reshape", {name + ".attended_t", g_.ints_constant(name + ".tokens_shape", {0, n, d})},
            name + ".attended");
    linear(name + ".attended", name + ".proj", nn::Linear(child<nn::LinearImpl>(kids, "proj")));
    g_.node("Add", {x, name + ".proj"}, name + ".x1");
    h = layer_norm(name + ".norm2", child<nn::LayerNormImpl>(kids, "norm2"), name + ".x1");
    h = linear(h, name + ".fc1", nn::Linear(child<nn::LinearImpl>(kids, "fc1")));
    // GELU (exact): 0.5 x (1 + erf(x / sqrt 2)).
    g_.node("Div", {h, g_.initializer(name + ".sqrt2", torch::full({1}, std::sqrt(2.0)))},
            name + ".gelu_in");
    g_.unary("Erf", name + ".gelu_in", name + ".erf");
    g_.node("Add", {name + ".erf", g_.initializer(name + ".one", torch::ones({1}))},
            name + ".erf1");
    g_.node("Mul", {h, name + ".erf1"}, name + ".gelu2");
    g_.node("Mul", {name + ".gelu2", g_.initializer(name + ".half", torch::full({1}, 0.5))},
            name + ".gelu");
    linear(name + ".gelu", name + ".fc2", nn::Linear(child<nn::LinearImpl>(kids, "fc2")));
    g_.node("Add", {name + ".x1", name + ".fc2"}, name);
    return name;
  }

  GraphWriter& g_;
  const nn::Module& head_;
  int64_t heads_;
};

// Inception-v3 (backbones/inception.cpp): BasicConv = conv + BN (eps 0.001, folded) + ReLU;
// the Mixed blocks' branches concatenated in torchvision's order; the auxiliary classifier
// runs in training only and is not written.
class InceptionWriter {
 public:
  // tf_padding (model.tf_padding, Keras weights): branch pools average inside the image only.
  InceptionWriter(GraphWriter& g, const nn::Module& backbone, bool tf_padding)
      : g_(g), kids_(children(backbone)), tf_padding_(tf_padding) {}

  BackboneGraph write(std::string x) {
    x = basic("Conv2d_2b_3x3", basic("Conv2d_2a_3x3", basic("Conv2d_1a_3x3", x)));
    x = stage_block(g_, kids_, 1, x);
    x = basic("Conv2d_4a_3x3", basic("Conv2d_3b_1x1", g_.max_pool(x, "backbone.pool1", 3, 2, 0)));
    x = stage_block(g_, kids_, 2, x);
    x = g_.max_pool(x, "backbone.pool2", 3, 2, 0);
    for (const char* name : {"Mixed_5b", "Mixed_5c", "Mixed_5d"}) x = block_a(name, x);
    x = stage_block(g_, kids_, 3, x);
    x = block_b("Mixed_6a", x);
    for (const char* name : {"Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"}) x = block_c(name, x);
    x = stage_block(g_, kids_, 4, x);
    x = block_d("Mixed_7a", x);
    for (const char* name : {"Mixed_7b", "Mixed_7c"}) x = block_e(name, x);
    x = stage_block(g_, kids_, 5, x);
    GraphWriter* g = &g_;
    return {x, [g, x] { return g->global_average(x, "backbone.embedding"); }};
  }

 private:
  // A BasicConv child `conv` of `block` ("" for a top-level one).
  std::string basic(const std::string& name, const std::string& x, const std::string& block = "") {
    const nn::Module& owner =
        block.empty() ? *kids_.at(name) : *children(*kids_.at(block)).at(name);
    auto parts = children(owner);
    const std::string full = "backbone." + (block.empty() ? name : block + "." + name);
    return g_.relu(g_.conv(x, full, child<nn::Conv2dImpl>(parts, "conv"),
                           child<nn::BatchNorm2dImpl>(parts, "bn"), full));
  }
  std::string chain(const std::string& block, std::initializer_list<const char*> names,
                    std::string x) {
    for (const char* name : names) x = basic(name, x, block);
    return x;
  }
  std::string avg_pool_3x3(const std::string& x, const std::string& name) {
    auto& pool = g_.node("AveragePool", {x}, name);
    GraphWriter::ints(pool, "kernel_shape", {3, 3});
    GraphWriter::ints(pool, "strides", {1, 1});
    GraphWriter::ints(pool, "pads", {1, 1, 1, 1});
    GraphWriter::integer(pool, "count_include_pad", tf_padding_ ? 0 : 1);
    return name;
  }
  std::string concat(const std::vector<std::string>& parts, const std::string& name) {
    auto& cat = g_.node("Concat", parts, name);
    GraphWriter::integer(cat, "axis", 1);
    return name;
  }
  std::string pooled_branch(const std::string& block, const std::string& x) {
    return basic("branch_pool", avg_pool_3x3(x, "backbone." + block + ".avg_pool"), block);
  }
  std::string block_a(const std::string& b, const std::string& x) {
    return concat(
        {basic("branch1x1", x, b), chain(b, {"branch5x5_1", "branch5x5_2"}, x),
         chain(b, {"branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"}, x), pooled_branch(b, x)},
        "backbone." + b);
  }
  std::string block_b(const std::string& b, const std::string& x) {
    return concat({basic("branch3x3", x, b),
                   chain(b, {"branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"}, x),
                   g_.max_pool(x, "backbone." + b + ".max_pool", 3, 2, 0)},
                  "backbone." + b);
  }
  std::string block_c(const std::string& b, const std::string& x) {
    return concat(
        {basic("branch1x1", x, b), chain(b, {"branch7x7_1", "branch7x7_2", "branch7x7_3"}, x),
         chain(b,
               {"branch7x7dbl_1", "branch7x7dbl_2", "branch7x7dbl_3", "branch7x7dbl_4",
                "branch7x7dbl_5"},
               x),
         pooled_branch(b, x)},
        "backbone." + b);
  }
  std::string block_d(const std::string& b, const std::string& x) {
    return concat(
        {chain(b, {"branch3x3_1", "branch3x3_2"}, x),
         chain(b, {"branch7x7x3_1", "branch7x7x3_2", "branch7x7x3_3", "branch7x7x3_4"}, x),
         g_.max_pool(x, "backbone." + b + ".max_pool", 3, 2, 0)},
        "backbone." + b);
  }
  std::string block_e(const std::string& b, const std::string& x) {
    const std::string t = basic("branch3x3_1", x, b);
    const std::string d = chain(b, {"branch3x3dbl_1", "branch3x3dbl_2"}, x);
    return concat({basic("branch1x1", x, b),
                   concat({basic("branch3x3_2a", t, b), basic("branch3x3_2b", t, b)},
                          "backbone." + b + ".branch3x3"),
                   concat({basic("branch3x3dbl_3a", d, b), basic("branch3x3dbl_3b", d, b)},
                          "backbone." + b + ".branch3x3dbl"),
                   pooled_branch(b, x)},
                  "backbone." + b);
  }

  GraphWriter& g_;
  std::map<std::string, ModulePtr> kids_;
  bool tf_padding_;
};

void add_value_info(onnx::ValueInfoProto* info, const std::string& name,
                    const std::vector<int64_t>& dims, bool dynamic_batch) {
  info->set_name(name);
  auto* tensor = info->mutable_type()->mutable_tensor_type();
  tensor->set_elem_type(onnx::TensorProto::FLOAT);
  auto* shape = tensor->mutable_shape();
  for (size_t i = 0; i < dims.size(); ++i) {
    auto* d = shape->add_dim();
    if (i == 0 && dynamic_batch)
      d->set_dim_param("batch");
    else
      d->set_dim_value(dims[i]);
  }
}

}  // namespace

OnnxExport export_onnx(const models::LoadedModel& loaded, const std::filesystem::path& out,
                       const OnnxOptions& options) {
  if (options.opset < 11 || options.opset > 17)
    throw Error(fmt::format("--opset must be between 11 and 17, got {}", options.opset));
  const auto& spec = loaded.info.arch;
  const std::string backbone_name = spec.value("backbone", "");
  const std::string head_name = spec.value("head", "linear");
  if (head_name == "wsdan")
    throw Error(
        "ONNX export does not cover the wsdan head: its refined prediction crops every image "
        "around its own attention map and resizes the crop, which ONNX's fixed operators do not "
        "express exactly (export a model with another head, or set model.wsdan.refine: false "
        "and a linear head for deployment)");
  if (head_name != "linear" && head_name != "cosine" && head_name != "bilinear" &&
      head_name != "self_attention")
    throw Error("ONNX export has no writer for the '" + head_name + "' head");
  if (head_name == "bilinear" &&
      spec.value("bilinear", nlohmann::json::object()).value("type", "full") != "full")
    throw Error(
        "ONNX export covers full bilinear pooling; compact bilinear (Tensor Sketch) needs a "
        "scatter-add, which the opset finch writes (11) does not have");
  const int64_t size = loaded.info.preprocess.input_size;
  torch::NoGradGuard no_grad;

  onnx::ModelProto model;
  model.set_ir_version(onnx::IR_VERSION_2019_3_18);  // IR 6: what opsets 11..17 run on
  model.set_producer_name("finch");
  model.set_producer_version(loaded.info.finch_version);
  auto* opset = model.add_opset_import();
  opset->set_domain("");
  opset->set_version(options.opset);
  auto* graph = model.mutable_graph();
  graph->set_name(backbone_name + "_" + head_name);
  GraphWriter g(*graph);

  auto& classifier = *loaded.model;
  auto backbone = classifier.backbone();
  BackboneGraph features;
  if (backbone_name.rfind("resnet", 0) == 0 || backbone_name.rfind("resnext", 0) == 0 ||
      backbone_name.rfind("wide_resnet", 0) == 0)
    features = write_resnet(g, *backbone, "images");
  else if (backbone_name.rfind("vgg", 0) == 0)
    features = write_vgg(g, *backbone, "images", size, spec.value("vgg_fc", true));
  else if (backbone_name == "inception_v3")
    features = InceptionWriter(g, *backbone, spec.value("tf_padding", false)).write("images");
  else if (auto* mobile = dynamic_cast<const models::mobile::MobileBackboneImpl*>(backbone.get()))
    features = MobileWriter(g, *mobile).write("images");
  else
    throw Error(
        "ONNX export covers the ResNet, VGG, Inception-v3, MobileNet and EfficientNet "
        "backbones; this model's backbone is '" +
        backbone_name + "'");

  auto head = children(*classifier.head());
  auto fc = child<nn::LinearImpl>(head, "fc");
  if (!fc) throw Error("ONNX export: the " + head_name + " head has no 'fc' layer");
  std::string embedding;
  if (head_name == "linear") {
    embedding = features.embed();
    std::string x = embedding;
    if (auto mlp = head.find("mlp"); mlp != head.end()) {  // model.linear.hidden
      // Linear, ReLU, Dropout per hidden layer: the Linears are children 0, 3, 6, ...
      const auto layers = children(*mlp->second);
      for (size_t i = 0; layers.count(std::to_string(i)); i += 3) {
        const std::string index = std::to_string(i);
        x = g.relu(
            g.linear(x, "head.mlp." + index, nn::Linear(child<nn::LinearImpl>(layers, index))));
      }
    }
    g.linear(x, "logits", nn::Linear(fc));
  } else if (head_name == "cosine") {
    embedding = features.embed();
    // logits = scale * cos(embedding, class weight): the weights are normalised here, the
    // embedding in the graph.
    torch::Tensor w = torch::nn::functional::normalize(
        fc->weight, torch::nn::functional::NormalizeFuncOptions().dim(1));
    auto& norm = g.node("LpNormalization", {embedding}, "head.normalized");
    GraphWriter::integer(norm, "axis", 1);
    GraphWriter::integer(norm, "p", 2);
    auto& gemm = g.node("Gemm", {"head.normalized", g.initializer("head.fc.weight", w)}, "logits");
    GraphWriter::integer(gemm, "transB", 1);
    GraphWriter::real(gemm, "alpha", static_cast<float>(spec.value("cosine_scale", 30.0)));
  } else {
    // The last stage's size decides the reshapes: found by running the backbone once.
    auto stages = backbone->forward_features(torch::zeros({1, 3, size, size})).stages;
    const auto shape = stages.back().sizes().vec();
    nn::Linear classifier_fc(fc);
    if (head_name == "bilinear") {
      embedding = write_bilinear(g, head, features.last_stage, shape);
      // The classifier sees the unit vector times the head's logit scale: folded into fc.
      auto reduce = child<nn::Conv2dImpl>(head, "reduce");
      const double scale =
          models::bilinear_logit_scale(spec.value("bilinear", nlohmann::json::object()),
                                       reduce ? reduce->options.out_channels() : shape.at(1));
      classifier_fc =
          nn::Linear(nn::LinearOptions(fc->options.in_features(), fc->options.out_features()));
      torch::NoGradGuard no_grad;
      classifier_fc->weight.copy_(fc->weight * scale);
      classifier_fc->bias.copy_(fc->bias);
    } else {
      embedding =
          SelfAttentionWriter(
              g, *classifier.head(),
              spec.value("self_attention", nlohmann::json::object()).value("heads", int64_t{8}))
              .write(features.last_stage, shape);
    }
    g.linear(embedding, "logits", classifier_fc);
  }
  g.node("Identity", {embedding}, "embedding");

  const int64_t batch = 1, classes = static_cast<int64_t>(loaded.info.classes.size());
  add_value_info(graph->add_input(), "images", {batch, 3, size, size}, options.dynamic_batch);
  add_value_info(graph->add_output(), "logits", {batch, classes}, options.dynamic_batch);
  add_value_info(graph->add_output(), "embedding", {batch, classifier.head()->embedding_dim()},
                 options.dynamic_batch);

  try {
    onnx::checker::check_model(model);
  } catch (const std::exception& e) {
    throw Error(std::string("ONNX export produced a graph the ONNX checker rejects: ") + e.what());
  }
  std::string bytes;
  if (!model.SerializeToString(&bytes)) throw Error("ONNX export: serialising the graph failed");

  nlohmann::json pre = {{"input", "images"},
                        {"layout", "NCHW float32, RGB, normalised"},
                        {"input_size", size},
                        {"mean", loaded.info.preprocess.mean},
                        {"std", loaded.info.preprocess.std},
                        {"eval_transforms", loaded.info.preprocess.eval_transforms},
                        {"classes", loaded.info.classes},
                        {"outputs", {"logits", "embedding"}}};
  OnnxExport result{out, out.string() + ".preprocess.json", graph->node_size(),
                    graph->initializer_size()};
  write_file_atomic(out, bytes);
  write_file_atomic(result.preprocess, pre.dump(2) + "\n");
  return result;
}

}  // namespace finch::exporting
