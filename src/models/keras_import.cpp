#include "finch/models/keras_import.h"

#include <fmt/format.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/torch.h>

#include <algorithm>
#include <map>
#include <set>

#include "finch/core/error.h"
#include "finch/models/registry.h"

namespace finch::models {

namespace {

using nlohmann::json;

struct KerasLayer {
  std::string name, class_name;
  json config;
  std::string input;  // the first inbound layer (functional models), else empty
};

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.rfind(prefix, 0) == 0;
}

// modelTopology is {keras_version, backend, model_config: {class_name, config}} (tfjs-converter
// of Keras 2) or the model config itself; a functional model's config is {layers: [...]}, an
// old Sequential's the list itself.
std::vector<KerasLayer> keras_layers(const json& topology, const std::string& source) {
  const json& model = topology.contains("model_config") ? topology["model_config"] : topology;
  json layers;
  if (model.is_object() && model.contains("config")) {
    const json& config = model["config"];
    layers = config.is_array() ? config : config.value("layers", json());
  }
  if (!layers.is_array() || layers.empty())
    throw Error(source + ": the Keras model config lists no layers");
  std::vector<KerasLayer> out;
  for (const json& layer : layers) {
    if (!layer.is_object() || !layer.contains("class_name") || !layer["class_name"].is_string())
      throw Error(source + ": a Keras layer without a class_name");
    KerasLayer l;
    l.class_name = layer["class_name"];
    l.config = layer.value("config", json::object());
    if (!l.config.is_object()) l.config = json::object();
    if (layer.contains("name") && layer["name"].is_string())
      l.name = layer["name"];
    else if (l.config.contains("name") && l.config["name"].is_string())
      l.name = l.config["name"];
    // inbound_nodes: [[[layer, node, tensor, kwargs], ...]] in Keras 2.
    const json& inbound = layer.value("inbound_nodes", json::array());
    if (inbound.is_array() && !inbound.empty() && inbound[0].is_array() && !inbound[0].empty() &&
        inbound[0][0].is_array() && !inbound[0][0].empty() && inbound[0][0][0].is_string())
      l.input = inbound[0][0][0];
    out.push_back(std::move(l));
  }
  return out;
}

// Keras' automatic names number layers of a class in creation order ("conv2d_17"): 0 when
// `name` is not one of them.
int64_t auto_name_number(const std::string& name, const std::string& stem) {
  if (!starts_with(name, stem + "_") || name.size() == stem.size() + 1) return 0;
  const std::string digits = name.substr(stem.size() + 1);
  if (digits.size() > 9 || !std::all_of(digits.begin(), digits.end(), ::isdigit)) return 0;
  return std::stoll(digits);
}

struct Converter {
  const std::string& source;
  std::map<std::string, std::map<std::string, torch::Tensor>> vars;  // layer -> var -> tensor
  std::set<std::string> used;                                        // "layer/var"
  StateDict out;

  torch::Tensor take(const std::string& layer, const std::string& var, bool required = true) {
    auto l = vars.find(layer);
    if (l != vars.end()) {
      auto v = l->second.find(var);
      if (v != l->second.end()) {
        used.insert(layer + "/" + var);
        return v->second.to(torch::kFloat32);
      }
    }
    if (required) throw Error(source + ": Keras layer '" + layer + "' has no weight '" + var + "'");
    return {};
  }

  void put(const std::string& name, const torch::Tensor& tensor, const torch::Tensor& target,
           const std::string& from) {
    if (tensor.sizes() != target.sizes())
      throw Error(fmt::format(
          "{}: Keras layer '{}' gives {} a {} tensor where finch expects {}: the Keras model is "
          "not the architecture finch took it for (another width or variant)",
          source, from, name, fmt::join(tensor.sizes(), "x"), fmt::join(target.sizes(), "x")));
    out.emplace_back(name, tensor.contiguous());
  }
};

}  // namespace

KerasConversion convert_keras(const io::TfjsModel& model, const std::string& source) {
  const std::vector<KerasLayer> layers = keras_layers(model.topology, source);
  std::map<std::string, const KerasLayer*> by_name, by_input;
  for (const auto& layer : layers) {
    by_name[layer.name] = &layer;
    if (!layer.input.empty() && layer.class_name == "BatchNormalization")
      by_input[layer.input] = &layer;
  }

  std::string arch, family;
  if (by_name.count("mixed10")) {
    arch = "inception_v3";
    family = "InceptionV3";
  } else if (by_name.count("Conv1") && by_name.count("block_16_project")) {
    arch = "mobilenet_v2";
    family = "MobileNetV2";
  } else {
    std::vector<std::string> first;
    for (size_t i = 0; i < layers.size() && i < 5; ++i)
      first.push_back(layers[i].name + " (" + layers[i].class_name + ")");
    throw Error(fmt::format(
        "{}: finch maps keras.applications InceptionV3 and MobileNetV2 models; this Keras "
        "model is neither (first layers: {})",
        source, fmt::join(first, ", ")));
  }

  Converter c{source, {}, {}, {}};
  for (const auto& [name, tensor] : model.weights) {
    const auto slash = name.rfind('/');
    if (slash == std::string::npos || slash == 0)
      throw Error(source + ": weight '" + name + "' is not named <layer>/<variable>");
    std::string layer = name.substr(0, slash);
    if (const auto outer = layer.rfind('/'); outer != std::string::npos)
      layer = layer.substr(outer + 1);  // a nested model's prefix ("mobilenetv2_1.00_224/")
    c.vars[layer][name.substr(slash + 1)] = tensor;
  }

  // Keras' convolutions in creation order: numbered automatic names when every conv has one
  // (Keras' InceptionV3: conv2d_1 .. conv2d_94; the topology lists them sorted by depth),
  // else the topology's order (MobileNetV2 names its layers itself).
  std::vector<const KerasLayer*> convs;
  for (const auto& layer : layers)
    if (layer.class_name == "Conv2D" || layer.class_name == "DepthwiseConv2D")
      convs.push_back(&layer);
  if (std::all_of(convs.begin(), convs.end(),
                  [](const KerasLayer* l) { return auto_name_number(l->name, "conv2d") > 0; }))
    std::stable_sort(convs.begin(), convs.end(), [](const KerasLayer* a, const KerasLayer* b) {
      return auto_name_number(a->name, "conv2d") < auto_name_number(b->name, "conv2d");
    });

  // finch's convolutions and BatchNorms in registration order (torchvision's), without the
  // auxiliary classifier Keras' InceptionV3 does not have.
  const ModelSpec backbone_spec = {
      {"backbone", arch}, {"aux_logits", false}, {"tf_padding", true}, {"num_classes", 1}};
  auto backbone = build_backbone(backbone_spec);
  struct Target {
    std::string name;
    torch::nn::Conv2dImpl* conv = nullptr;
    torch::nn::BatchNorm2dImpl* bn = nullptr;
  };
  std::vector<Target> convs_finch;
  std::map<std::string, Target> bn_after;  // conv name -> the BatchNorm registered right after it
  std::string last_conv;
  for (const auto& item : backbone->named_modules("", /*include_self=*/false)) {
    if (starts_with(item.key(), "AuxLogits")) continue;
    if (auto* conv = item.value()->as<torch::nn::Conv2dImpl>()) {
      convs_finch.push_back({item.key(), conv, nullptr});
      last_conv = item.key();
    } else if (auto* bn = item.value()->as<torch::nn::BatchNorm2dImpl>()) {
      if (last_conv.empty() || bn_after.count(last_conv))
        throw Error("internal: " + arch + " has a BatchNorm that follows no convolution");
      bn_after[last_conv] = {item.key(), nullptr, bn};
    }
  }
  if (convs.size() != convs_finch.size())
    throw Error(fmt::format(
        "{}: this Keras {} has {} convolutions, finch's {} has {}: not the same architecture",
        source, family, convs.size(), arch, convs_finch.size()));

  size_t batchnorms = 0;
  for (size_t i = 0; i < convs.size(); ++i) {
    const KerasLayer& keras = *convs[i];
    const Target& target = convs_finch[i];
    const std::string prefix = "backbone." + target.name;
    if (keras.class_name == "DepthwiseConv2D") {
      torch::Tensor k = c.take(keras.name, "depthwise_kernel");  // H W C M
      if (k.dim() != 4) throw Error(source + ": " + keras.name + ": a depthwise kernel is 4-D");
      k = k.permute({2, 3, 0, 1}).reshape({k.size(2) * k.size(3), 1, k.size(0), k.size(1)});
      c.put(prefix + ".weight", k, target.conv->weight, keras.name);
    } else {
      torch::Tensor k = c.take(keras.name, "kernel");  // H W I O
      if (k.dim() != 4) throw Error(source + ": " + keras.name + ": a conv kernel is 4-D");
      c.put(prefix + ".weight", k.permute({3, 2, 0, 1}), target.conv->weight, keras.name);
    }
    if (torch::Tensor bias = c.take(keras.name, "bias", false); bias.defined()) {
      if (!target.conv->bias.defined())
        throw Error(source + ": Keras layer '" + keras.name + "' has a bias; finch's " + arch +
                    " convolution " + target.name + " has none");
      c.put(prefix + ".bias", bias, target.conv->bias, keras.name);
    }

    auto finch_bn = bn_after.find(target.name);
    auto keras_bn = by_input.find(keras.name);
    if ((finch_bn == bn_after.end()) != (keras_bn == by_input.end()))
      throw Error(
          fmt::format("{}: a BatchNorm follows {} in one model and not after {} in the "
                      "other: not the same architecture",
                      source, keras.name, target.name));
    if (finch_bn == bn_after.end()) continue;
    const KerasLayer& bn = *keras_bn->second;
    torch::nn::BatchNorm2dImpl& module = *finch_bn->second.bn;
    const std::string bn_prefix = "backbone." + finch_bn->second.name;
    const int64_t channels = module.weight.size(0);
    torch::Tensor gamma = c.take(bn.name, "gamma", false);
    torch::Tensor beta = c.take(bn.name, "beta", false);
    c.put(bn_prefix + ".weight", gamma.defined() ? gamma : torch::ones({channels}), module.weight,
          bn.name);
    c.put(bn_prefix + ".bias", beta.defined() ? beta : torch::zeros({channels}), module.bias,
          bn.name);
    c.put(bn_prefix + ".running_mean", c.take(bn.name, "moving_mean"), module.running_mean,
          bn.name);
    const double keras_eps = bn.config.value("epsilon", 1e-3);
    torch::Tensor var = c.take(bn.name, "moving_variance") + (keras_eps - module.options.eps());
    c.put(bn_prefix + ".running_var", var.clamp_min(0.0), module.running_var, bn.name);
    c.out.emplace_back(bn_prefix + ".num_batches_tracked", torch::zeros({}, torch::kLong));
    ++batchnorms;
  }

  // Dense layers on the pooled features: the linear head.
  std::vector<const KerasLayer*> dense;
  for (const auto& layer : layers)
    if (layer.class_name == "Dense") dense.push_back(&layer);
  std::vector<int64_t> hidden;
  int64_t width = backbone->embedding_dim(), num_classes = 0;
  for (size_t i = 0; i < dense.size(); ++i) {
    const KerasLayer& layer = *dense[i];
    const bool last = i + 1 == dense.size();
    const std::string activation = layer.config.value("activation", "linear");
    if (!last && activation != "relu")
      throw Error(fmt::format("{}: Dense layer '{}' uses '{}'; finch's hidden layers use relu",
                              source, layer.name, activation));
    if (last && activation != "softmax" && activation != "linear")
      throw Error(
          fmt::format("{}: the last Dense layer '{}' uses '{}' (finch maps softmax or "
                      "linear outputs)",
                      source, layer.name, activation));
    torch::Tensor kernel = c.take(layer.name, "kernel");  // in, out
    if (kernel.dim() != 2 || kernel.size(0) != width)
      throw Error(
          fmt::format("{}: Dense layer '{}' takes {} inputs where {} arrive (its kernel "
                      "is {})",
                      source, layer.name, kernel.dim() == 2 ? kernel.size(0) : -1, width,
                      fmt::join(kernel.sizes(), "x")));
    const std::string name = last ? "head.fc" : fmt::format("head.mlp.{}", 3 * i);
    c.out.emplace_back(name + ".weight", kernel.t().contiguous());
    torch::Tensor bias = c.take(layer.name, "bias", false);
    c.out.emplace_back(name + ".bias",
                       bias.defined() ? bias.contiguous() : torch::zeros({kernel.size(1)}));
    width = kernel.size(1);
    if (last)
      num_classes = width;
    else
      hidden.push_back(width);
  }

  for (const auto& [layer, variables] : c.vars)
    for (const auto& [var, tensor] : variables)
      if (!c.used.count(layer + "/" + var))
        throw Error(fmt::format("{}: weight {}/{} belongs to no layer finch maps onto {}", source,
                                layer, var, arch));

  KerasConversion result;
  result.spec = {{"backbone", arch},
                 {"head", "linear"},
                 {"linear", {{"hidden", hidden}}},
                 {"num_classes", num_classes},
                 {"tf_padding", true}};
  if (arch == "inception_v3") result.spec["aux_logits"] = false;
  const KerasLayer& input = layers.front();
  const json shape = input.config.value("batch_input_shape", json());
  if (input.class_name == "InputLayer" && shape.is_array() && shape.size() == 4 &&
      shape[1].is_number_integer() && shape[1] == shape[2] && shape[1].get<int64_t>() > 0)
    result.spec["input_size"] = shape[1];
  result.weights = std::move(c.out);
  result.summary = fmt::format("Keras {}: {} convolutions, {} BatchNorms, {} Dense -> {}", family,
                               convs.size(), batchnorms, dense.size(), arch);
  if (!dense.empty())
    result.summary += fmt::format(
        " + linear head{} -> {} outputs",
        hidden.empty() ? "" : fmt::format(" [{}]", fmt::join(hidden, ", ")), num_classes);
  return result;
}

}  // namespace finch::models
