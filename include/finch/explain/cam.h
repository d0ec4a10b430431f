#pragma once
// Class activation maps: where in the image a model looks for a class.
//   gradcam    Selvaraju et al., "Grad-CAM", ICCV 2017: weights = spatial mean of the
//              gradients of the target logit w.r.t. a stage map A; CAM = ReLU(sum_k w_k A_k).
//   gradcam++  Chattopadhyay et al., "Grad-CAM++", WACV 2018, with the closed-form alpha of
//              pytorch-grad-cam (second and third powers of the gradients).
//   attention  the attention maps a head returns (self_attention, wsdan): their mean.
//   rollout    Abnar & Zuidema, "Quantifying Attention Flow in Transformers", ACL 2020, for
//              ViT backbones: per layer the head-averaged attention plus the identity (the
//              residual), rows renormalised, multiplied over the layers; the class token's row
//              over the patch grid.
// Maps are at the resolution of the chosen stage and min-max normalised to [0, 1] per image.
#include <torch/types.h>

#include <string>
#include <vector>

#include "finch/models/model.h"

namespace finch::explain {

enum class CamMethod { kGradCam, kGradCamPlusPlus, kAttention, kRollout };

/// "gradcam" | "gradcam++" | "attention" | "rollout"; throws finch::Error otherwise.
CamMethod parse_cam_method(const std::string& name);
std::string cam_method_name(CamMethod method);

struct CamOptions {
  CamMethod method = CamMethod::kGradCam;
  int64_t layer = 0;    // backbone stage, 1-based; 0 = the last stage
  int64_t target = -1;  // class index; -1 = each image's predicted class
};

struct CamResult {
  torch::Tensor cam;     // [B, h, w] float32 in [0, 1]
  torch::Tensor logits;  // [B, C] of the plain (single-look) forward pass
  torch::Tensor target;  // [B] int64: the class each map explains
};

/// Maps for a batch of preprocessed images [B, 3, H, W]. Runs the backbone and head directly
/// (not Classifier::forward, so WS-DAN's eval refinement does not mix in a second look), in
/// eval mode; the model's mode is restored afterwards and no parameter gradient is touched.
CamResult compute_cam(models::Classifier& model, const torch::Tensor& images,
                      const CamOptions& options);

/// Grad-CAM from a stage map and its gradient, both [B, K, h, w] -> ReLU(sum_k w_k A_k)
/// [B, h, w], w_k = mean over (h, w) of the gradient (not normalised).
torch::Tensor gradcam_map(const torch::Tensor& activations, const torch::Tensor& gradients);
/// Grad-CAM++: alpha = g^2 / (2 g^2 + sum_ij(A) g^3 + 1e-6) (0 where g = 0),
/// w_k = sum_ij alpha * ReLU(g); -> ReLU(sum_k w_k A_k) [B, h, w].
torch::Tensor gradcam_plus_plus_map(const torch::Tensor& activations,
                                    const torch::Tensor& gradients);
/// Attention rollout from per-layer attention probabilities [B, heads, T, T] (class token
/// first): -> [B, T, T], the product over layers (last on the left) of
/// rownorm(0.5 * mean_heads(A) + 0.5 * I).
torch::Tensor attention_rollout(const std::vector<torch::Tensor>& attention);
/// Per image (x - min) / (max - min) over the map; a constant map becomes all zeros. [B, h, w].
torch::Tensor normalize_maps(const torch::Tensor& maps);

}  // namespace finch::explain
