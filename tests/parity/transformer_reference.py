"""Writes a torchvision Vision / Swin Transformer's weights, an input batch, its logits, its
stage maps and (ViT) every encoder layer's attention probabilities.

usage: transformer_reference.py ARCH WEIGHTS_SIZE INPUT_SIZE OUT.safetensors
ARCH is vit_b_16, vit_b_32, vit_l_16, swin_t, swin_s or swin_b. A ViT is built with
image_size=WEIGHTS_SIZE; when INPUT_SIZE differs, the written weights stay those of the
WEIGHTS_SIZE model and the outputs come from torchvision's model for INPUT_SIZE whose
pos_embedding torchvision's interpolate_embeddings made from them (what finch does on the fly).
Swin ignores WEIGHTS_SIZE (its weights do not depend on the input size).

Weights are torchvision's random initialisation (seed 0) with LayerNorm affine parameters
perturbed and every all-zero tensor (ViT's class token and heads.head, the biases) drawn from
N(0, 0.02), so that a wrong use of any of them shows in the outputs.
Tensors: "model.<torchvision name>", "input" [2, 3, INPUT_SIZE, INPUT_SIZE], "output"
(eval-mode logits), "stage.<i>" (finch's stage maps [B, C, H, W]) and, for ViT,
"attention.<layer>" [B, heads, T, T] (need_weights=True, average_attn_weights=False, on the
inputs the layer's self_attention received).
"""
import sys

import torch
import torchvision
from torchvision.models.vision_transformer import interpolate_embeddings

from finch_ref import save_safetensors


def perturb(model):
    with torch.no_grad():
        norms = set()
        for m in model.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
                norms.update([id(m.weight), id(m.bias)])
        for p in model.parameters():
            if id(p) not in norms and not p.any():
                p.normal_(0.0, 0.02)


def tokens_to_map(x, grid_h, grid_w):
    """[B, 1 + h*w, D] with the class token first -> [B, D, h, w]."""
    return x[:, 1:].transpose(1, 2).reshape(x.shape[0], x.shape[2], grid_h, grid_w)


def run_vit(arch, weights_size, input_size, x):
    model = getattr(torchvision.models, arch)(weights=None, image_size=weights_size)
    perturb(model)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    if input_size != weights_size:
        state = interpolate_embeddings(input_size, model.patch_size, model.state_dict())
        model = getattr(torchvision.models, arch)(weights=None, image_size=input_size)
        model.load_state_dict(state)
    model.eval()
    layers = list(model.encoder.layers)
    n = len(layers)
    grid = input_size // model.patch_size
    stages, attention = [], []
    for module in [layers[n // 4 - 1], layers[n // 2 - 1], layers[3 * n // 4 - 1], model.encoder.ln]:
        module.register_forward_hook(lambda m, i, o: stages.append(tokens_to_map(o, grid, grid).clone()))
    for layer in layers:
        # ln_1's output is what self_attention receives (as query, key and value).
        def hook(m, i, o, attn=layer.self_attention):
            _, weights = attn(o, o, o, need_weights=True, average_attn_weights=False)
            attention.append(weights.clone())

        layer.ln_1.register_forward_hook(hook)
    with torch.no_grad():
        y = model(x)
    return weights, y, stages, attention


def run_swin(arch, x):
    model = getattr(torchvision.models, arch)(weights=None)
    perturb(model)
    model.eval()
    stages = []
    for module in [model.features[1], model.features[3], model.features[5], model.norm]:
        module.register_forward_hook(lambda m, i, o: stages.append(o.permute(0, 3, 1, 2).clone()))
    with torch.no_grad():
        y = model(x)
    return model.state_dict(), y, stages, []


def main():
    arch, weights_size, input_size, out_path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    torch.manual_seed(0)
    x = torch.randn(2, 3, input_size, input_size)
    if arch.startswith("vit"):
        weights, y, stages, attention = run_vit(arch, weights_size, input_size, x)
    else:
        weights, y, stages, attention = run_swin(arch, x)
    tensors = {"model." + k: v for k, v in weights.items()}
    tensors["input"] = x
    tensors["output"] = y
    for i, t in enumerate(stages):
        tensors["stage.%d" % i] = t.contiguous()
    for i, t in enumerate(attention):
        tensors["attention.%d" % i] = t
    save_safetensors(tensors, out_path)
    print("ok", arch, tuple(y.shape), len(stages), "stages", len(attention), "attention maps")


if __name__ == "__main__":
    main()
