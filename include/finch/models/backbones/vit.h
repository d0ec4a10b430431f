#pragma once
// Vision Transformer with torchvision's module and parameter names (conv_proj, class_token,
// encoder.pos_embedding, encoder.layers.encoder_layer_<i>.*, encoder.ln), so torchvision state
// dicts load unchanged. Dosovitskiy et al., "An Image is Worth 16x16 Words: Transformers for
// Image Recognition at Scale", ICLR 2021.
//
// Stages are the patch tokens (class token removed) as [B, D, H/p, W/p] maps after encoder
// layers L/4, L/2, 3L/4 and after the final encoder.ln; embed() is the class token after
// encoder.ln, what torchvision's heads.head sees. The attention is written out (not
// torch::nn::MultiheadAttention) so that each layer's probabilities can be recorded, which
// TransFG's part selection needs.
//
// model.vit.patch_stride below the patch size makes the patches overlap (TransFG: 16 px patches
// every 12 px, He et al. 2022): conv_proj's stride, so the weights keep their shapes and
// torchvision's load; the grid is (side - patch) / stride + 1 and the position embedding is
// resized to it.
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "finch/models/model.h"

namespace finch::models {

struct VisionTransformerOptions {
  std::string name = "vit_b_16";  // the registered name, for messages
  int64_t image_size = 224;       // side the stored position embedding is made for
  int64_t patch_size = 16;
  int64_t num_layers = 12;
  int64_t num_heads = 12;
  int64_t hidden_dim = 768;
  int64_t mlp_dim = 3072;
  int64_t patch_stride = 0;  // conv_proj's stride; 0 = patch_size (no overlap, torchvision's)
};

/// torch.nn.MultiheadAttention's parameters (in_proj_weight, in_proj_bias, out_proj) for
/// self-attention, computed explicitly: softmax(q k^T / sqrt(d)) v per head.
class ViTSelfAttentionImpl : public torch::nn::Module {
 public:
  ViTSelfAttentionImpl(int64_t hidden_dim, int64_t num_heads);
  /// [B, T, D] -> [B, T, D]. When `probabilities` is given it receives the attention
  /// probabilities [B, heads, T, T].
  torch::Tensor forward(const torch::Tensor& x, torch::Tensor* probabilities = nullptr);

  torch::Tensor in_proj_weight, in_proj_bias;  // [3D, D], [3D]: q, k, v stacked
  torch::nn::Linear out_proj{nullptr};

 private:
  int64_t num_heads_;
};
TORCH_MODULE(ViTSelfAttention);

/// torchvision's EncoderBlock: x + attn(ln_1(x)), then + mlp(ln_2(.)) (pre-norm).
class ViTEncoderBlockImpl : public torch::nn::Module {
 public:
  ViTEncoderBlockImpl(int64_t num_heads, int64_t hidden_dim, int64_t mlp_dim);
  /// [B, T, D] -> [B, T, D]; `probabilities` as in ViTSelfAttentionImpl::forward.
  torch::Tensor forward(const torch::Tensor& x, torch::Tensor* probabilities = nullptr);

 private:
  torch::nn::LayerNorm ln_1{nullptr}, ln_2{nullptr};
  ViTSelfAttention self_attention{nullptr};
  torch::nn::Sequential mlp{nullptr};  // Linear, GELU, Dropout, Linear, Dropout (mlp.0, mlp.3)
};
TORCH_MODULE(ViTEncoderBlock);

class VisionTransformerImpl : public BackboneImpl {
 public:
  explicit VisionTransformerImpl(const VisionTransformerOptions& options);

  /// Image sides must be multiples of the patch size, or patch + k * stride with overlapping
  /// patches (finch::Error otherwise). Another grid than image_size's interpolates the position
  /// embedding as torchvision's interpolate_embeddings does.
  Features forward_features(const torch::Tensor& images) override;
  /// The class token after encoder.ln of the forward_features call that made `features`.
  torch::Tensor embed(const Features& features) override;
  int64_t num_features() const override { return options_.hidden_dim; }
  bool matmul_bound() const override { return true; }
  std::vector<std::vector<std::string>> stage_prefixes() const override;
  std::string torchvision_classifier() const override { return "heads.head"; }
  int64_t output_stride() const override { return patch_stride(); }
  std::vector<int64_t> stage_channels() const override;
  /// encoder.pos_embedding made for another image size: resized to this model's grid.
  torch::Tensor adapt_pretrained_tensor(const std::string& name,
                                        const torch::Tensor& tensor) const override;

  /// Off by default. When on, every forward keeps each layer's attention probabilities.
  void record_attention(bool on) { record_attention_ = on; }
  bool recording_attention() const { return record_attention_; }
  /// [B, heads, T, T] per encoder layer (T = 1 + patches, class token first) of the latest
  /// forward while recording; empty otherwise.
  const std::vector<torch::Tensor>& attention() const { return attention_; }

  /// Off by default. When on, every forward also keeps what TransFG's part selection needs:
  /// the tokens entering the last encoder layer and the attention probabilities of the layers
  /// before it (references to tensors the forward makes anyway; in training autograd keeps
  /// them too).
  void keep_last_layer_input(bool on) { keep_last_layer_input_ = on; }
  bool keeping_last_layer_input() const { return keep_last_layer_input_; }
  /// What the latest forward_features() kept for `features` while keeping.
  struct LastLayerInput {
    torch::Tensor tokens;                  // [B, T, D] entering the last layer, class token first
    std::vector<torch::Tensor> attention;  // [B, heads, T, T] of layers 1 .. L-1
  };
  /// finch::Error when `features` are not those of the latest forward_features() or it kept
  /// nothing (keep_last_layer_input off).
  const LastLayerInput& last_layer_input(const Features& features) const;

  // The pieces, for heads that run the encoder themselves (TransFG feeds selected tokens to
  // the last layer).
  /// [B, 3, H, W] -> [B, 1 + gh * gw, D] (gh = grid_side(H)): class token first, position
  /// embedding added.
  torch::Tensor tokens(const torch::Tensor& images);
  const std::vector<ViTEncoderBlock>& layers() const { return layers_; }
  torch::nn::LayerNorm& final_norm() { return ln_; }  // encoder.ln
  const VisionTransformerOptions& options() const { return options_; }
  /// conv_proj's stride: options().patch_stride, or the patch size when that is 0.
  int64_t patch_stride() const {
    return options_.patch_stride > 0 ? options_.patch_stride : options_.patch_size;
  }
  /// Patches along an image side of `side` pixels: (side - patch) / stride + 1.
  int64_t grid_side(int64_t side) const {
    return (side - options_.patch_size) / patch_stride() + 1;
  }

 private:
  /// encoder.pos_embedding for a gh x gw patch grid: the stored one, or its patch part
  /// resized (bicubic, align_corners) with the class token's entry kept.
  torch::Tensor position_embedding(int64_t gh, int64_t gw);

  VisionTransformerOptions options_;
  torch::nn::Conv2d conv_proj{nullptr};
  torch::Tensor class_token, pos_embedding;
  std::vector<ViTEncoderBlock> layers_;
  torch::nn::LayerNorm ln_{nullptr};

  bool record_attention_ = false;
  std::vector<torch::Tensor> attention_;
  bool keep_last_layer_input_ = false;
  LastLayerInput last_layer_input_;
  // forward_features writes these and embed() reads them for the same Features: the class
  // token has no place in Features (stages hold spatial maps only), so a backbone instance
  // runs one forward at a time, as the heads call forward_features then embed.
  torch::Tensor last_class_token_, last_stage_;

  // Interpolated position embeddings by grid, reused in eval mode without autograd; stale
  // once pos_embedding is written (its version) or moved (its storage).
  struct CachedEmbedding {
    torch::Tensor value;
    int64_t version = -1;
    const void* source = nullptr;
  };
  std::map<std::pair<int64_t, int64_t>, CachedEmbedding> position_cache_;
};

/// torchvision's interpolate_embeddings for a grid_h x grid_w patch grid: the patch part of
/// `pos_embedding` [1, 1 + n * n, D] resized (bicubic, align_corners), the class token's entry
/// kept; returned unchanged for n x n. Also for loading weights made for another image size.
torch::Tensor resize_position_embedding(const torch::Tensor& pos_embedding, int64_t grid_h,
                                        int64_t grid_w);

/// Options of a registered name: vit_b_16, vit_b_32 or vit_l_16; patch_stride 0 = the patch
/// size.
VisionTransformerOptions vit_options(const std::string& name, int64_t image_size = 224,
                                     int64_t patch_stride = 0);

}  // namespace finch::models
