"""Writes a torchvision ResNet's weights, an input batch and torchvision's output.

usage: resnet_reference.py ARCH SIZE OUT.safetensors
Weights are torchvision's own random initialisation (seed 0) with BatchNorm running
statistics perturbed so that eval-mode BN is not the identity. Tensors are stored as
"model.<torchvision name>", "input" [2, 3, SIZE, SIZE] and "output" (eval-mode logits).
"""
import sys

import torch
import torchvision

from finch_ref import save_safetensors

arch, size, out_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
torch.manual_seed(0)
model = getattr(torchvision.models, arch)(weights=None)
with torch.no_grad():
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-0.1, 0.1)
model.eval()
x = torch.randn(2, 3, size, size)
with torch.no_grad():
    y = model(x)
tensors = {"model." + k: v for k, v in model.state_dict().items()}
tensors["input"] = x
tensors["output"] = y
save_safetensors(tensors, out_path)
print("ok", arch, tuple(y.shape))
