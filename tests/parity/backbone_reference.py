"""Writes a torchvision backbone's weights, an input batch, its output and its stage maps.

usage: backbone_reference.py ARCH SIZE OUT.safetensors
Weights are torchvision's own random initialisation (seed 0) with BatchNorm running
statistics and affine parameters perturbed so that eval-mode BN is not the identity.
MobileNet / EfficientNet BatchNorms get statistics measured on a random batch instead, and
ConvNeXt O(1) layer scales and LayerNorm affine parameters (see the functions below), so
that every stage map depends on the input.
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


# Families whose stages are found from `features`: the last child at each output stride.
FEATURE_FAMILIES = ("mobilenet_v2", "mobilenet_v3", "efficientnet_b", "convnext")


def last_child_at_each_stride(model, size):
    """MobileNetV2/V3, EfficientNet and ConvNeXt: a stage ends with the last child of
    model.features before the resolution halves again (finch's rule, found independently here
    by watching the map sizes); the last stage is features' output."""
    widths = []
    hooks = [m.register_forward_hook(lambda m, i, o: widths.append(o.shape[-1]))
             for m in model.features]
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size))  # eval mode: no statistics change, no random draws
    for h in hooks:
        h.remove()
    last = len(widths) - 1
    return [model.features[i] for i in range(len(widths)) if i == last or widths[i + 1] != widths[i]]


def stage_modules(arch, model, size):
    if arch.startswith(FEATURE_FAMILIES):
        return last_child_at_each_stride(model, size)
    if arch.startswith("vgg"):
        layers = list(model.features)
        return [layers[i - 1] for i, m in enumerate(layers) if isinstance(m, torch.nn.MaxPool2d)]
    names = STAGES["inception_v3" if arch == "inception_v3" else "resnet"]
    return [getattr(model, n) for n in names]


def measure_batchnorm(model, size):
    """MobileNet / EfficientNet: running statistics measured on a random batch. Their depthwise
    convolutions (He init with fan_out = C k k) shrink the signal by about sqrt(C) per block, so
    with arbitrary statistics the deep maps hardly depend on the input (1e-7 of their scale)
    and parity would test little more than the BN biases."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: after one batch, that batch's statistics
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 3, size, size))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.eval()


def perturb_convnext(model):
    """ConvNeXt: layer_scale starts at 1e-6, which hides every residual branch; O(1) scales and
    random LayerNorm affine parameters make each block and norm show in the maps."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("layer_scale"):
                p.uniform_(0.5, 1.5)
        for m in model.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)


def main():
    arch, size, out_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    torch.manual_seed(0)
    kwargs = {"aux_logits": True, "init_weights": True} if arch == "inception_v3" else {}
    model = getattr(torchvision.models, arch)(weights=None, **kwargs)
    perturb_batchnorm(model)
    if arch.startswith(("mobilenet", "efficientnet")):
        measure_batchnorm(model, size)
    if arch.startswith("convnext"):
        perturb_convnext(model)
    model.eval()
    captured = []
    for module in stage_modules(arch, model, size):
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
