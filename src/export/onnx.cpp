#include "finch/export/onnx.h"

#include <fmt/format.h>
#include <onnx/checker.h>
#include <onnx/onnx_pb.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/pooling.h>

#include <map>

#include "finch/core/atomic_file.h"
#include "finch/core/error.h"
#include "finch/models/inference.h"

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

  // conv (+ the BatchNorm after it, folded) -> one Conv node.
  std::string conv(const std::string& x, const std::string& name, const nn::Conv2d& conv,
                   const nn::BatchNorm2d& bn = nullptr) {
    nn::Conv2d c = bn ? models::fold_batchnorm(conv, bn) : conv;
    const auto& o = c->options;
    if (!c10::holds_alternative<torch::ExpandingArray<2>>(o.padding()))
      throw Error("ONNX export: " + name + " uses string padding, which is not supported");
    const auto pad = c10::get<torch::ExpandingArray<2>>(o.padding());
    std::vector<std::string> inputs{x, initializer(name + ".weight", c->weight)};
    if (c->bias.defined()) inputs.push_back(initializer(name + ".bias", c->bias));
    auto& n = node("Conv", inputs, name);
    ints(n, "kernel_shape", {(*o.kernel_size())[0], (*o.kernel_size())[1]});
    ints(n, "strides", {(*o.stride())[0], (*o.stride())[1]});
    ints(n, "pads", {(*pad)[0], (*pad)[1], (*pad)[0], (*pad)[1]});
    ints(n, "dilations", {(*o.dilation())[0], (*o.dilation())[1]});
    integer(n, "group", o.groups());
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

void refuse_stage_blocks(const std::map<std::string, ModulePtr>& kids) {
  if (kids.count("attention"))
    throw Error(
        "ONNX export does not cover attention blocks inserted after backbone stages "
        "(model.attention.type); export a model trained without them");
}

// ResNet / ResNeXt / Wide-ResNet / CIFAR ResNets: the stem, then every block of every stage
// (conv-bn-relu ... conv-bn, + identity or downsample, relu), then the global average.
std::string write_resnet(GraphWriter& g, const nn::Module& backbone, std::string x) {
  auto kids = children(backbone);
  refuse_stage_blocks(kids);
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
  }
  return g.global_average(x, "backbone.embedding");
}

// VGG: features (conv [bn] relu ... maxpool), then embed(): pool5, the 7 x 7 adaptive
// average and fc6 / fc7 (or, with model.vgg_fc false, the global average of conv5).
std::string write_vgg(GraphWriter& g, const nn::Module& backbone, std::string x, int64_t input_size,
                      bool with_fc) {
  auto kids = children(backbone);
  refuse_stage_blocks(kids);
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
      if (++seen_pools == pools) break;  // pool5 belongs to embed()
      x = g.max_pool(x, name, 2, 2, 0);
    } else {
      throw Error("ONNX export: unexpected layer " + name + " in a VGG backbone");
    }
  }
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
  auto classifier = child<nn::SequentialImpl>(kids, "classifier");
  for (size_t i = 0; i < classifier->size(); ++i) {
    ModulePtr m = classifier->ptr(i);
    if (auto fc = std::dynamic_pointer_cast<nn::LinearImpl>(m))
      x = g.linear(x, "backbone.classifier." + std::to_string(i), nn::Linear(fc));
    else if (m->as<nn::ReLU>())
      x = g.relu(x);
    // Dropout: the identity at inference.
  }
  return x;
}

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

std::vector<std::string> onnx_supported() {
  return {"backbones: resnet18/34/50/101/152, resnext, wide_resnet, resnet20/32/56, vgg11..19(_bn)",
          "heads: linear, cosine"};
}

OnnxExport export_onnx(const models::LoadedModel& loaded, const std::filesystem::path& out,
                       const OnnxOptions& options) {
  if (options.opset < 11 || options.opset > 17)
    throw Error(fmt::format("--opset must be between 11 and 17, got {}", options.opset));
  const auto& spec = loaded.info.arch;
  const std::string backbone_name = spec.value("backbone", "");
  const std::string head_name = spec.value("head", "linear");
  if (head_name != "linear" && head_name != "cosine")
    throw Error("ONNX export covers the linear and cosine heads; this model's head is '" +
                head_name + "' (its attention / bilinear pooling has no ONNX writer yet)");
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
  std::string embedding;
  if (backbone_name.rfind("resnet", 0) == 0 || backbone_name.rfind("resnext", 0) == 0 ||
      backbone_name.rfind("wide_resnet", 0) == 0)
    embedding = write_resnet(g, *backbone, "images");
  else if (backbone_name.rfind("vgg", 0) == 0)
    embedding = write_vgg(g, *backbone, "images", size, spec.value("vgg_fc", true));
  else
    throw Error("ONNX export covers ResNet and VGG backbones; this model's backbone is '" +
                backbone_name + "'");

  auto head = children(*classifier.head());
  auto fc = child<nn::LinearImpl>(head, "fc");
  if (!fc) throw Error("ONNX export: the " + head_name + " head has no 'fc' layer");
  if (head_name == "linear") {
    g.linear(embedding, "logits", nn::Linear(fc));
  } else {
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
