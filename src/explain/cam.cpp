#include "finch/explain/cam.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include "finch/core/error.h"
#include "finch/models/backbones/vit.h"

namespace finch::explain {

CamMethod parse_cam_method(const std::string& name) {
  if (name == "gradcam") return CamMethod::kGradCam;
  if (name == "gradcam++" || name == "gradcampp") return CamMethod::kGradCamPlusPlus;
  if (name == "attention") return CamMethod::kAttention;
  if (name == "rollout") return CamMethod::kRollout;
  throw Error(fmt::format(
      "unknown explanation method '{}' (gradcam, gradcam++, attention, rollout)", name));
}

std::string cam_method_name(CamMethod method) {
  switch (method) {
    case CamMethod::kGradCam:
      return "gradcam";
    case CamMethod::kGradCamPlusPlus:
      return "gradcam++";
    case CamMethod::kAttention:
      return "attention";
    case CamMethod::kRollout:
      return "rollout";
  }
  return "?";
}

torch::Tensor gradcam_map(const torch::Tensor& activations, const torch::Tensor& gradients) {
  TORCH_CHECK(activations.dim() == 4 && activations.sizes() == gradients.sizes(),
              "gradcam_map: activations and gradients must be [B, K, h, w] of one shape");
  torch::Tensor weights = gradients.mean({2, 3}, /*keepdim=*/true);
  return torch::relu((weights * activations).sum(1));
}

torch::Tensor gradcam_plus_plus_map(const torch::Tensor& activations,
                                    const torch::Tensor& gradients) {
  TORCH_CHECK(activations.dim() == 4 && activations.sizes() == gradients.sizes(),
              "gradcam_plus_plus_map: activations and gradients must be [B, K, h, w] of one shape");
  // Chattopadhyay et al. eq. 19 with exp(S) folded in as pytorch-grad-cam does: the second
  // and third derivatives of exp(S) become powers of the first.
  const torch::Tensor g2 = gradients.pow(2);
  const torch::Tensor g3 = g2 * gradients;
  const torch::Tensor sum_a = activations.sum({2, 3}, /*keepdim=*/true);
  torch::Tensor alpha = g2 / (2 * g2 + sum_a * g3 + 1e-6);
  alpha = torch::where(gradients != 0, alpha, torch::zeros_like(alpha));
  torch::Tensor weights = (torch::relu(gradients) * alpha).sum({2, 3}, /*keepdim=*/true);
  return torch::relu((weights * activations).sum(1));
}

torch::Tensor attention_rollout(const std::vector<torch::Tensor>& attention) {
  TORCH_CHECK(!attention.empty(), "attention_rollout: no layers");
  torch::Tensor rollout;
  for (const auto& layer : attention) {
    TORCH_CHECK(layer.dim() == 4 && layer.size(2) == layer.size(3),
                "attention_rollout: each layer must be [B, heads, T, T]");
    torch::Tensor a = layer.to(torch::kFloat).mean(1);
    a = 0.5 * a + 0.5 * torch::eye(a.size(1), a.options()).unsqueeze(0);
    a = a / a.sum(-1, /*keepdim=*/true);
    rollout = rollout.defined() ? torch::bmm(a, rollout) : a;
  }
  return rollout;
}

torch::Tensor normalize_maps(const torch::Tensor& maps) {
  TORCH_CHECK(maps.dim() == 3, "normalize_maps: expected [B, h, w], got ", maps.sizes());
  const auto flat = maps.flatten(1);
  const auto lo = std::get<0>(flat.min(1)).view({-1, 1, 1});
  const auto hi = std::get<0>(flat.max(1)).view({-1, 1, 1});
  const auto range = hi - lo;
  return torch::where(range > 0, (maps - lo) / range.clamp_min(1e-30), torch::zeros_like(maps));
}

CamResult compute_cam(models::Classifier& model, const torch::Tensor& images,
                      const CamOptions& options) {
  TORCH_CHECK(images.dim() == 4, "compute_cam: images must be [B, 3, H, W]");
  const bool was_training = model->is_training();
  model->eval();
  struct RestoreMode {
    models::Classifier& m;
    bool training;
    ~RestoreMode() {
      if (training) m->train();
    }
  } restore{model, was_training};
  auto& backbone = *model->backbone();
  auto& head = *model->head();
  CamResult result;

  if (options.method == CamMethod::kRollout) {
    auto* vit = dynamic_cast<models::VisionTransformerImpl*>(&backbone);
    if (vit == nullptr)
      throw Error(
          "attention rollout needs a Vision Transformer backbone (vit_b_16, vit_b_32, vit_l_16); "
          "use --method gradcam");
    torch::NoGradGuard no_grad;
    const bool was_recording = vit->recording_attention();
    vit->record_attention(true);
    auto features = backbone.forward_features(images);
    auto output = head.forward_head(features, backbone);
    const auto attention = vit->attention();
    vit->record_attention(was_recording);
    result.logits = output.logits;
    result.target = options.target >= 0
                        ? torch::full({images.size(0)}, options.target, torch::kLong)
                        : output.logits.argmax(1);
    const auto& grid = features.stages.back();  // [B, D, gh, gw]
    torch::Tensor cls_row = attention_rollout(attention).select(1, 0).slice(1, 1);
    result.cam = normalize_maps(cls_row.reshape({images.size(0), grid.size(2), grid.size(3)}));
    return result;
  }

  if (options.method == CamMethod::kAttention) {
    torch::NoGradGuard no_grad;
    auto features = backbone.forward_features(images);
    auto output = head.forward_head(features, backbone);
    if (!output.attention.defined())
      throw Error(
          "this model's head returns no attention maps (only the self_attention, wsdan, pim and "
          "transfg heads "
          "do); use --method gradcam or gradcam++");
    result.logits = output.logits;
    result.target = options.target >= 0
                        ? torch::full({images.size(0)}, options.target, torch::kLong)
                        : output.logits.argmax(1);
    result.cam = normalize_maps(output.attention.mean(1).to(torch::kFloat));
    return result;
  }

  // Gradients flow to the stage map through the input, so this works whether or not the
  // parameters require gradients (a frozen backbone), and never accumulates into param.grad.
  torch::AutoGradMode enable_grad(true);
  torch::Tensor input = images.detach().clone().set_requires_grad(true);
  auto features = backbone.forward_features(input);
  const auto stages = static_cast<int64_t>(features.stages.size());
  int64_t layer = options.layer == 0 ? stages : options.layer;
  if (layer < 1 || layer > stages)
    throw Error(fmt::format("--layer {} is out of range: this backbone has stages 1..{}",
                            options.layer, stages));
  auto output = head.forward_head(features, backbone);
  const int64_t classes = output.logits.size(1);
  if (options.target >= classes)
    throw Error(fmt::format("target class {} is out of range: the model has {} classes",
                            options.target, classes));
  result.logits = output.logits.detach();
  result.target = options.target >= 0 ? torch::full({images.size(0)}, options.target, torch::kLong)
                                      : result.logits.argmax(1);
  // Images are independent in eval mode, so the gradient of the sum of each image's target
  // logit is each image's own gradient.
  torch::Tensor score = output.logits.gather(1, result.target.view({-1, 1})).sum();
  // Every stage at once (one backward pass either way): the last stage may not reach the
  // logits (ViT classifies the class token, which reads the patch tokens before the last
  // layer); by default the deepest stage that does is explained.
  auto all_gradients = torch::autograd::grad({score}, features.stages, {}, false, false,
                                             /*allow_unused=*/true);
  if (options.layer == 0)
    while (layer > 1 && !all_gradients[layer - 1].defined()) --layer;
  torch::Tensor gradients = all_gradients[layer - 1];
  if (!gradients.defined())
    throw Error(fmt::format(
        "stage {} does not influence this model's logits, so it has no Grad-CAM; choose an "
        "earlier --layer (1..{})",
        layer, stages - 1));
  torch::Tensor activations = features.stages[layer - 1].detach();
  torch::Tensor raw = options.method == CamMethod::kGradCam
                          ? gradcam_map(activations, gradients)
                          : gradcam_plus_plus_map(activations, gradients);
  result.cam = normalize_maps(raw.to(torch::kFloat));
  return result;
}

}  // namespace finch::explain
