// ViT-B/16, ViT-B/32 and ViT-L/16 as torchvision 0.14 builds them (vision_transformer.py);
// see include/finch/models/backbones/vit.h for the stages and the recorded attention.
#include "finch/models/backbones/vit.h"

#include <fmt/format.h>
#include <torch/nn/functional/upsampling.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/dropout.h>

#include <cmath>

#include "backbone_util.h"
#include "finch/core/error.h"
#include "finch/models/registry.h"

namespace finch::models {

namespace {

namespace nn = torch::nn;
using backbone_util::trunc_normal_;

nn::LayerNorm layer_norm(int64_t dim) {
  return nn::LayerNorm(nn::LayerNormOptions({dim}).eps(1e-6));
}

// [B, T, D] tokens with the class token first -> [B, D, gh, gw] map of the patch tokens.
torch::Tensor patch_map(const torch::Tensor& x, int64_t gh, int64_t gw) {
  return x.slice(1, 1).transpose(1, 2).reshape({x.size(0), x.size(2), gh, gw});
}

// Sides that `patch` px patches every `stride` px tile exactly: patch + k * stride (multiples
// of the patch without overlap).
bool tiles(int64_t side, int64_t patch, int64_t stride) {
  return side >= patch && (side - patch) % stride == 0;
}

// `side` when it tiles, else the valid sides around it: for messages.
std::string valid_sides(int64_t side, int64_t patch, int64_t stride) {
  if (tiles(side, patch, stride)) return std::to_string(side);
  const int64_t below = patch + std::max<int64_t>(0, (side - patch) / stride) * stride;
  return fmt::format("{} or {}", below, below + stride);
}

}  // namespace

ViTSelfAttentionImpl::ViTSelfAttentionImpl(int64_t hidden_dim, int64_t num_heads)
    : num_heads_(num_heads) {
  if (hidden_dim % num_heads != 0)
    throw Error(
        fmt::format("ViT: hidden_dim {} is not a multiple of num_heads {}", hidden_dim, num_heads));
  in_proj_weight = register_parameter("in_proj_weight", torch::empty({3 * hidden_dim, hidden_dim}));
  in_proj_bias = register_parameter("in_proj_bias", torch::zeros({3 * hidden_dim}));
  out_proj = register_module("out_proj", nn::Linear(hidden_dim, hidden_dim));
  // torch.nn.MultiheadAttention._reset_parameters; out_proj.weight keeps Linear's default.
  if (!random_init_enabled()) return;
  nn::init::xavier_uniform_(in_proj_weight);
  nn::init::zeros_(out_proj->bias);
}

torch::Tensor ViTSelfAttentionImpl::forward(const torch::Tensor& x, torch::Tensor* probabilities) {
  const int64_t batch = x.size(0), tokens = x.size(1), dim = x.size(2);
  const int64_t head_dim = dim / num_heads_;
  // [B, T, 3D] -> 3 x [B, heads, T, d]
  auto qkv = torch::linear(x, in_proj_weight, in_proj_bias)
                 .view({batch, tokens, 3, num_heads_, head_dim})
                 .permute({2, 0, 3, 1, 4});
  torch::Tensor q = qkv[0] / std::sqrt(static_cast<double>(head_dim));
  torch::Tensor attn = torch::softmax(q.matmul(qkv[1].transpose(-2, -1)), -1);
  if (probabilities) *probabilities = attn;
  torch::Tensor out = attn.matmul(qkv[2]).transpose(1, 2).reshape({batch, tokens, dim});
  return out_proj(out);
}

ViTEncoderBlockImpl::ViTEncoderBlockImpl(int64_t num_heads, int64_t hidden_dim, int64_t mlp_dim) {
  ln_1 = register_module("ln_1", layer_norm(hidden_dim));
  self_attention = register_module("self_attention", ViTSelfAttention(hidden_dim, num_heads));
  ln_2 = register_module("ln_2", layer_norm(hidden_dim));
  // torchvision's MLPBlock; dropout 0 as in every torchvision ViT.
  nn::Linear fc1(hidden_dim, mlp_dim), fc2(mlp_dim, hidden_dim);
  if (random_init_enabled()) {
    for (auto* linear : {&fc1, &fc2}) {
      nn::init::xavier_uniform_((*linear)->weight);
      nn::init::normal_((*linear)->bias, 0.0, 1e-6);
    }
  }
  mlp = register_module("mlp",
                        nn::Sequential(fc1, nn::GELU(), nn::Dropout(0.0), fc2, nn::Dropout(0.0)));
}

torch::Tensor ViTEncoderBlockImpl::forward(const torch::Tensor& x, torch::Tensor* probabilities) {
  torch::Tensor y = x + self_attention->forward(ln_1(x), probabilities);
  return y + mlp->forward(ln_2(y));
}

VisionTransformerImpl::VisionTransformerImpl(const VisionTransformerOptions& options)
    : options_(options) {
  const int64_t p = options_.patch_size, s = patch_stride(), dim = options_.hidden_dim;
  if (options_.patch_stride < 0 || s > p)
    throw Error(fmt::format(
        "{}: model.vit.patch_stride must be between 1 and the patch size {} (0 = the patch size), "
        "got {}",
        options_.name, p, options_.patch_stride));
  if (!tiles(options_.image_size, p, s))
    throw Error(
        s == p ? fmt::format(
                     "{}: model.input_size {} must be a multiple of the patch size {} (e.g. "
                     "{})",
                     options_.name, options_.image_size, p, valid_sides(options_.image_size, p, s))
               : fmt::format("{}: model.input_size {} must be the patch size {} plus a multiple of "
                             "model.vit.patch_stride {} (e.g. {})",
                             options_.name, options_.image_size, p, s,
                             valid_sides(options_.image_size, p, s)));
  if (options_.num_layers < 4)
    throw Error(options_.name + ": needs at least 4 encoder layers (one per stage)");
  conv_proj = register_module("conv_proj", nn::Conv2d(nn::Conv2dOptions(3, dim, p).stride(s)));
  class_token = register_parameter("class_token", torch::zeros({1, 1, dim}));
  auto encoder = register_module("encoder", std::make_shared<nn::Module>());
  const int64_t grid = grid_side(options_.image_size);
  pos_embedding =
      encoder->register_parameter("pos_embedding", torch::empty({1, grid * grid + 1, dim}));
  auto layers = encoder->register_module("layers", std::make_shared<nn::Module>());
  for (int64_t i = 0; i < options_.num_layers; ++i) {
    layers_.push_back(
        layers->register_module("encoder_layer_" + std::to_string(i),
                                ViTEncoderBlock(options_.num_heads, dim, options_.mlp_dim)));
  }
  ln_ = encoder->register_module("ln", layer_norm(dim));

  // torchvision's initialisation (the blocks initialise themselves).
  if (!random_init_enabled()) return;
  nn::init::normal_(pos_embedding, 0.0, 0.02);  // from BERT
  trunc_normal_(conv_proj->weight, std::sqrt(1.0 / (3.0 * p * p)));
  nn::init::zeros_(conv_proj->bias);
}

torch::Tensor VisionTransformerImpl::position_embedding(int64_t gh, int64_t gw) {
  const int64_t grid = grid_side(options_.image_size);
  if (gh == grid && gw == grid) return pos_embedding;
  // Reused only where no gradient can flow to pos_embedding through it.
  const bool cacheable = !is_training() && !torch::GradMode::is_enabled();
  auto& cached = position_cache_[{gh, gw}];
  if (cacheable && cached.value.defined() && cached.version == pos_embedding._version() &&
      cached.source == pos_embedding.data_ptr())
    return cached.value;
  torch::Tensor out = resize_position_embedding(pos_embedding, gh, gw);
  if (cacheable) cached = {out, pos_embedding._version(), pos_embedding.data_ptr()};
  return out;
}

torch::Tensor VisionTransformerImpl::tokens(const torch::Tensor& images) {
  const int64_t p = options_.patch_size, s = patch_stride();
  if (images.dim() != 4 || images.size(1) != 3)
    throw Error(fmt::format("{}: expected images [B, 3, H, W], got {}", options_.name,
                            fmt::join(images.sizes(), "x")));
  const int64_t h = images.size(2), w = images.size(3);
  if (!tiles(h, p, s) || !tiles(w, p, s)) {
    const std::string rule =
        s == p
            ? fmt::format("multiples of the patch size {}", p)
            : fmt::format("the patch size {} plus a multiple of model.vit.patch_stride {}", p, s);
    throw Error(fmt::format(
        "{}: image sides must be {}, got {}x{} (height {}, width {} work; set model.input_size "
        "and the transforms' sizes accordingly)",
        options_.name, rule, h, w, valid_sides(h, p, s), valid_sides(w, p, s)));
  }
  torch::Tensor x = conv_proj(images);  // [B, D, gh, gw]
  const int64_t gh = x.size(2), gw = x.size(3);
  x = x.flatten(2).transpose(1, 2);  // [B, T-1, D]
  x = torch::cat({class_token.expand({x.size(0), -1, -1}), x}, 1);
  return x + position_embedding(gh, gw);
}

Features VisionTransformerImpl::forward_features(const torch::Tensor& images) {
  attention_.clear();
  last_layer_input_ = LastLayerInput();
  last_class_token_ = last_stage_ = torch::Tensor();
  torch::Tensor x = tokens(images);  // checks the image size
  const int64_t gh = grid_side(images.size(2)), gw = grid_side(images.size(3));
  Features out;
  const int64_t layers = options_.num_layers;
  size_t stage = 0;
  for (int64_t i = 0; i < layers; ++i) {
    const bool last = i + 1 == layers;
    if (keep_last_layer_input_ && last) last_layer_input_.tokens = x;
    const bool keep = keep_last_layer_input_ && !last;
    torch::Tensor probabilities;
    x = layers_[i]->forward(x, record_attention_ || keep ? &probabilities : nullptr);
    if (record_attention_) attention_.push_back(probabilities);
    if (keep) last_layer_input_.attention.push_back(probabilities);
    // Stages 1-3 end after layers L/4, L/2, 3L/4; the last one after encoder.ln.
    if (i + 1 == layers * static_cast<int64_t>(stage + 1) / 4 && stage < 3) {
      torch::Tensor map = after_stage(++stage, patch_map(x, gh, gw));
      // The map (after an inserted block, if any) feeds the next layers, the class token
      // unchanged: so a block acts, and gradients reach the map (Grad-CAM at this stage).
      x = torch::cat({x.slice(1, 0, 1), map.flatten(2).transpose(1, 2)}, 1);
      out.stages.push_back(map);
    }
  }
  x = ln_(x);
  out.stages.push_back(after_stage(4, patch_map(x, gh, gw)));
  last_class_token_ = x.select(1, 0);
  last_stage_ = out.stages.back();
  return out;
}

torch::Tensor VisionTransformerImpl::embed(const Features& features) {
  if (!last_class_token_.defined() || features.stages.empty() ||
      !features.stages.back().is_same(last_stage_))
    throw Error(options_.name +
                ": embed() needs the Features of this backbone's latest forward_features() (the "
                "class token is kept from that call); call forward_features again");
  return last_class_token_;
}

const VisionTransformerImpl::LastLayerInput& VisionTransformerImpl::last_layer_input(
    const Features& features) const {
  if (!last_layer_input_.tokens.defined() || features.stages.empty() ||
      !features.stages.back().is_same(last_stage_))
    throw Error(options_.name +
                ": the part selection needs the tokens entering the last encoder layer from this "
                "backbone's latest forward_features() with keep_last_layer_input on; call "
                "forward_features again");
  return last_layer_input_;
}

std::vector<std::vector<std::string>> VisionTransformerImpl::stage_prefixes() const {
  std::vector<std::vector<std::string>> prefixes(4);
  prefixes[0] = {"conv_proj", "class_token", "encoder.pos_embedding"};
  const int64_t layers = options_.num_layers;
  for (int64_t i = 0; i < layers; ++i) {
    size_t stage = 0;
    while (stage < 3 && i >= layers * static_cast<int64_t>(stage + 1) / 4) ++stage;
    prefixes[stage].push_back("encoder.layers.encoder_layer_" + std::to_string(i));
  }
  prefixes[3].push_back("encoder.ln");
  return prefixes;
}

std::vector<int64_t> VisionTransformerImpl::stage_channels() const {
  return std::vector<int64_t>(4, options_.hidden_dim);
}

torch::Tensor VisionTransformerImpl::adapt_pretrained_tensor(const std::string& name,
                                                             const torch::Tensor& tensor) const {
  if (name != "encoder.pos_embedding" || tensor.dim() != 3 || tensor.size(0) != 1 ||
      tensor.size(2) != options_.hidden_dim)
    return {};
  const int64_t grid = grid_side(options_.image_size);
  return resize_position_embedding(tensor, grid, grid);
}

torch::Tensor resize_position_embedding(const torch::Tensor& pos_embedding, int64_t grid_h,
                                        int64_t grid_w) {
  const int64_t patches = pos_embedding.dim() == 3 ? pos_embedding.size(1) - 1 : 0;
  const auto grid = static_cast<int64_t>(std::lround(std::sqrt(static_cast<double>(patches))));
  if (patches < 1 || pos_embedding.size(0) != 1 || grid * grid != patches)
    throw Error(fmt::format("a ViT position embedding is [1, 1 + n * n, D], got {}",
                            fmt::join(pos_embedding.sizes(), "x")));
  if (grid_h == grid && grid_w == grid) return pos_embedding;
  const int64_t dim = pos_embedding.size(2);
  torch::Tensor image = pos_embedding.slice(1, 1).permute({0, 2, 1}).reshape({1, dim, grid, grid});
  // bicubic upsampling has no bf16 CPU kernel: resize in fp32.
  image = nn::functional::interpolate(image.to(torch::kFloat),
                                      nn::functional::InterpolateFuncOptions()
                                          .size(std::vector<int64_t>{grid_h, grid_w})
                                          .mode(torch::kBicubic)
                                          .align_corners(true))
              .to(pos_embedding.scalar_type());
  return torch::cat(
      {pos_embedding.slice(1, 0, 1), image.reshape({1, dim, grid_h * grid_w}).permute({0, 2, 1})},
      1);
}

VisionTransformerOptions vit_options(const std::string& name, int64_t image_size,
                                     int64_t patch_stride) {
  VisionTransformerOptions o;
  o.name = name;
  o.image_size = image_size;
  o.patch_stride = patch_stride;
  if (name == "vit_b_16") {
    o.patch_size = 16;
  } else if (name == "vit_b_32") {
    o.patch_size = 32;
  } else if (name == "vit_l_16") {
    o.patch_size = 16;
    o.num_layers = 24;
    o.num_heads = 16;
    o.hidden_dim = 1024;
    o.mlp_dim = 4096;
  } else {
    throw Error("unknown Vision Transformer '" + name + "' (vit_b_16, vit_b_32, vit_l_16)");
  }
  return o;
}

namespace {

bool register_vits() {
  const std::vector<std::pair<const char*, const char*>> vits = {
      {"vit_b_16",
       "ViT-B/16 (Dosovitskiy et al. 2021), torchvision's names; 86 M parameters; position "
       "embedding for model.input_size, interpolated for other sizes"},
      {"vit_b_32", "ViT-B/32, torchvision's names; 88 M parameters"},
      {"vit_l_16", "ViT-L/16, torchvision's names; 304 M parameters"}};
  for (const auto& [name, description] : vits) {
    backbones().add(
        {name,
         description,
         [name = std::string(name)](const ModelSpec& spec) {
           const ModelSpec vit = spec_section(spec, "vit");
           return std::make_shared<VisionTransformerImpl>(
               vit_options(name, spec_value<int64_t>(spec, "input_size", 224),
                           spec_value<int64_t>(vit, "patch_stride", 0)));
         },
         {{"model.vit",
           "patch_stride: 0   # conv_proj's stride: 0 = the patch size; smaller overlaps the "
           "patches (TransFG: 12 with 16 px patches)"}}});
  }
  return true;
}

const bool kVitsRegistered = register_vits();

}  // namespace

}  // namespace finch::models
