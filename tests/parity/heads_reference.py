"""Recomputes finch's self-attention and bilinear heads with plain PyTorch operations.

usage: heads_reference.py HEADS.safetensors
The file (written by tests/unit/models/methods_test.cpp) holds the input map "input", each
head's weights "<case>.<name>" and finch's outputs "<case>.out.{logits,embedding,attention}"
for the cases "attention" (self_attention, 2 heads), "full" and "compact" (bilinear). Prints
"<case> ok" when the formulas below reproduce finch's outputs to 1e-5; exits 1 otherwise.
"""
import math
import sys

import torch
import torch.nn.functional as F

from finch_ref import load_safetensors

T, _ = load_safetensors(sys.argv[1])
X = T["input"].double()
B, C, H, W = X.shape


def w(case, name):
    return T[case + "." + name].double()


def self_attention(case="attention", heads=2):
    """softmax(Q K^T / sqrt(d_k)) V in pre-norm encoder layers over [cls; tokens] + positions."""
    tokens = torch.einsum("oc,bchw->bohw", w(case, "tokens.weight")[:, :, 0, 0], X)
    tokens = tokens + w(case, "tokens.bias")[None, :, None, None]
    d = tokens.shape[1]
    t = tokens.flatten(2).transpose(1, 2)
    pos = w(case, "pos_embed")
    g = int(math.isqrt(pos.shape[1] - 1))
    grid = pos[:, 1:].reshape(1, g, g, d).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(H, W), mode="bilinear", align_corners=False)
    pos = torch.cat([pos[:, :1], grid.flatten(2).transpose(1, 2)], 1)
    t = torch.cat([w(case, "cls_token").expand(B, 1, d), t], 1) + pos
    layer = 0
    while case + ".layers.%d.qkv.weight" % layer in T:
        p = "layers.%d." % layer
        y = F.layer_norm(t, (d,), w(case, p + "norm1.weight"), w(case, p + "norm1.bias"))
        q, k, v = (y @ w(case, p + "qkv.weight").T + w(case, p + "qkv.bias")).split(d, -1)
        split = lambda z: z.reshape(B, -1, heads, d // heads).transpose(1, 2)
        q, k, v = split(q), split(k), split(v)
        attn = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d // heads), -1)
        merged = (attn @ v).transpose(1, 2).reshape(B, -1, d)
        t = t + merged @ w(case, p + "proj.weight").T + w(case, p + "proj.bias")
        y = F.layer_norm(t, (d,), w(case, p + "norm2.weight"), w(case, p + "norm2.bias"))
        hidden = F.gelu(y @ w(case, p + "fc1.weight").T + w(case, p + "fc1.bias"))
        t = t + hidden @ w(case, p + "fc2.weight").T + w(case, p + "fc2.bias")
        layer += 1
    cls = F.layer_norm(t[:, 0], (d,), w(case, "norm.weight"), w(case, "norm.bias"))
    logits = cls @ w(case, "fc.weight").T + w(case, "fc.bias")
    return {"logits": logits, "embedding": cls,
            "attention": attn[:, :, 0, 1:].reshape(B, heads, H, W)}


def finish(case, pooled):
    z = torch.sign(pooled) * torch.sqrt(pooled.abs() + 1e-8)
    z = z / z.norm(dim=1, keepdim=True)
    return {"logits": z @ w(case, "fc.weight").T + w(case, "fc.bias"), "embedding": z}


def bilinear_full(case="full"):
    """Phi = X X^T / (h w), flattened."""
    flat = X.reshape(B, C, H * W)
    return finish(case, (flat @ flat.transpose(1, 2) / (H * W)).reshape(B, C * C))


def bilinear_compact(case="compact"):
    """Tensor Sketch by its definition: count sketches as dense matrices, circular convolution
    as an explicit sum of rolls, per position (finch sketches the averaged outer product)."""
    d = w(case, "fc.weight").shape[1]
    sketches = []
    for i in range(2):
        P = torch.zeros(C, d, dtype=torch.float64)
        P[torch.arange(C), T[case + ".hash%d" % i]] = w(case, "sign%d" % i)
        sketches.append(X.reshape(B, C, H * W).transpose(1, 2) @ P)  # [B, n, d]
    a, b = sketches
    conv = torch.stack([(a * torch.roll(b.flip(-1), k + 1, -1)).sum(-1) for k in range(d)], -1)
    return finish(case, conv.mean(1))


failed = False
for case, fn in (("attention", self_attention), ("full", bilinear_full),
                 ("compact", bilinear_compact)):
    ref = fn()
    for name, value in ref.items():
        ours = T[case + ".out." + name].double()
        diff = (ours - value).abs().max().item()
        if diff > 1e-5:
            print(case, name, "max diff", diff)
            failed = True
    if not failed:
        print(case, "ok")
sys.exit(1 if failed else 0)
