"""Grad-CAM and Grad-CAM++ of torchvision's resnet18 computed directly in PyTorch.

usage: gradcam_reference.py SIZE TARGET OUT.safetensors
Weights: torchvision's random initialisation (seed 0) with BatchNorm statistics perturbed,
as in backbone_reference.py. The maps come from forward/backward hooks on layer4 (finch's
last stage) for the logit of class TARGET of a seeded random input [2, 3, SIZE, SIZE]:
Grad-CAM (Selvaraju et al.): w_k = mean_ij dY/dA_kij; cam = ReLU(sum_k w_k A_k);
Grad-CAM++ as pytorch-grad-cam computes it; both min-max normalised to [0, 1] per image.
Tensors: "model.<name>", "input", "target" (int64 [2]), "gradcam", "gradcampp" [2, h, w],
"logits".
"""
import sys

import torch
import torchvision

from finch_ref import perturb_batchnorm, save_safetensors


def normalize(cam):
    flat = cam.flatten(1)
    lo = flat.min(1).values.view(-1, 1, 1)
    hi = flat.max(1).values.view(-1, 1, 1)
    return torch.where(hi - lo > 0, (cam - lo) / (hi - lo).clamp_min(1e-30), torch.zeros_like(cam))


def main():
    size, target, out_path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None)
    perturb_batchnorm(model)
    model.eval()
    store = {}
    model.layer4.register_forward_hook(lambda m, i, o: store.__setitem__("act", o))
    model.layer4.register_full_backward_hook(lambda m, gi, go: store.__setitem__("grad", go[0]))
    x = torch.randn(2, 3, size, size)
    logits = model(x)
    targets = torch.tensor([target, target], dtype=torch.int64)
    logits.gather(1, targets.view(-1, 1)).sum().backward()
    a, g = store["act"].detach(), store["grad"].detach()
    gradcam = torch.relu((g.mean((2, 3), keepdim=True) * a).sum(1))
    g2 = g ** 2
    g3 = g2 * g
    alpha = g2 / (2 * g2 + a.sum((2, 3), keepdim=True) * g3 + 1e-6)
    alpha = torch.where(g != 0, alpha, torch.zeros_like(alpha))
    weights = (torch.relu(g) * alpha).sum((2, 3), keepdim=True)
    gradcampp = torch.relu((weights * a).sum(1))
    tensors = {"model." + k: v for k, v in model.state_dict().items()}
    tensors["input"] = x
    tensors["target"] = targets
    tensors["logits"] = logits.detach()
    tensors["gradcam"] = normalize(gradcam)
    tensors["gradcampp"] = normalize(gradcampp)
    save_safetensors(tensors, out_path)
    print("ok", tuple(gradcam.shape))


if __name__ == "__main__":
    main()
