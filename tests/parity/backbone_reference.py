"""Writes a torchvision backbone's weights, an input batch, its output and its stage maps.

usage: backbone_reference.py ARCH SIZE OUT.safetensors
Weights are torchvision's own random initialisation (seed 0) with BatchNorm running
statistics and affine parameters perturbed so that eval-mode BN is not the identity.
Tensors: "model.<torchvision name>", "input" [2, 3, SIZE, SIZE], "output" (eval-mode logits)
and "stage.<i>" (the feature map finch calls stage i, captured with forward hooks).
"""
import sys

import torch
import torchvision

from finch_ref import perturb_batchnorm, save_safetensors

# Modules whose outputs are finch's stages. VGG's stages are the ReLUs before each max-pool.
STAGES = {
    "resnet": ["layer1", "layer2", "layer3", "layer4"],
    "inception_v3": ["Conv2d_2b_3x3", "Conv2d_4a_3x3", "Mixed_5d", "Mixed_6e", "Mixed_7c"],
}


def stage_modules(arch, model):
    if arch.startswith("vgg"):
        layers = list(model.features)
        return [layers[i - 1] for i, m in enumerate(layers) if isinstance(m, torch.nn.MaxPool2d)]
    names = STAGES["inception_v3" if arch == "inception_v3" else "resnet"]
    return [getattr(model, n) for n in names]


def main():
    arch, size, out_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    torch.manual_seed(0)
    kwargs = {"aux_logits": True, "init_weights": True} if arch == "inception_v3" else {}
    model = getattr(torchvision.models, arch)(weights=None, **kwargs)
    perturb_batchnorm(model)
    model.eval()
    captured = []
    for module in stage_modules(arch, model):
        module.register_forward_hook(lambda m, i, o: captured.append(o.clone()))
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        y = model(x)
    tensors = {"model." + k: v for k, v in model.state_dict().items()}
    tensors["input"] = x
    tensors["output"] = y
    for i, t in enumerate(captured):
        tensors["stage.%d" % i] = t
    save_safetensors(tensors, out_path)
    print("ok", arch, tuple(y.shape), len(captured), "stages")


if __name__ == "__main__":
    main()
