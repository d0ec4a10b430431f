"""Runs a few steps of a PyTorch optimizer on a fixed quadratic and prints the parameters.

usage: optimizer_reference.py NAME   (sgd | adam | adamw | rmsprop; settings as in the test)
"""
import sys

import torch

name = sys.argv[1]
torch.manual_seed(0)
w = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64))
b = torch.nn.Parameter(torch.tensor([0.5], dtype=torch.float64))
decay = [{"params": [w], "weight_decay": 0.01}, {"params": [b], "weight_decay": 0.0}]
if name == "sgd":
    opt = torch.optim.SGD(decay, lr=0.1, momentum=0.9, nesterov=True)
elif name == "adam":
    opt = torch.optim.Adam(decay, lr=0.1, betas=(0.9, 0.999), eps=1e-8)
elif name == "adamw":
    opt = torch.optim.AdamW(decay, lr=0.1, betas=(0.9, 0.999), eps=1e-8)
else:
    opt = torch.optim.RMSprop(decay, lr=0.01, alpha=0.99, eps=1e-8, momentum=0.9)
target = torch.tensor([0.3, 0.2, 0.1], dtype=torch.float64)
for _ in range(5):
    opt.zero_grad()
    loss = ((w - target) ** 2).sum() + (b ** 2).sum() * 3
    loss.backward()
    opt.step()
print(" ".join("%.15g" % v for v in torch.cat([w.detach(), b.detach()]).tolist()))
