"""Writes the state-dict names and shapes of torchvision architectures (no values), and the
eps / momentum of every normalisation layer.

usage: state_dict_shapes.py OUT.json ARCH [ARCH ...]
Output: {"ARCH": {"tensors": [[name, [shape...]], ...] in torchvision's state_dict order,
"norms": [[module name, eps, momentum or null], ...] for every BatchNorm2d and LayerNorm}}. Weight
initialisation is skipped: only names and shapes are wanted, so even EfficientNet-B7 and
ConvNeXt-B take a fraction of a second.
"""
import json
import sys

import torch
import torchvision


def _no_init(tensor, *args, **kwargs):
    return tensor


def main():
    out_path, archs = sys.argv[1], sys.argv[2:]
    for name in ("uniform_", "normal_", "trunc_normal_", "kaiming_uniform_", "kaiming_normal_",
                 "xavier_uniform_", "xavier_normal_", "constant_", "ones_", "zeros_"):
        setattr(torch.nn.init, name, _no_init)
    shapes = {}
    for arch in archs:
        model = getattr(torchvision.models, arch)(weights=None)
        norms = [[name, m.eps, getattr(m, "momentum", None)] for name, m in model.named_modules()
                 if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.LayerNorm))]
        shapes[arch] = {"tensors": [[k, list(v.shape)] for k, v in model.state_dict().items()],
                        "norms": norms}
    with open(out_path, "w") as f:
        json.dump(shapes, f)
    print("ok", len(archs), "architectures")


if __name__ == "__main__":
    main()
