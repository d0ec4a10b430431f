"""Loads a finch ResNet model file into torchvision and checks it reproduces finch's output.

usage: load_finch_model.py MODEL.safetensors IO.safetensors   (IO holds "input" and "output")
These are the documented few lines for using finch weights in PyTorch (docs/model-files.md).
"""
import json
import sys

import torch
import torchvision

from finch_ref import load_safetensors

tensors, meta = load_safetensors(sys.argv[1])
info = json.loads(meta["finch"])
model = getattr(torchvision.models, info["arch"]["backbone"])(num_classes=info["arch"]["num_classes"])
state = {k.removeprefix("backbone.").replace("head.fc.", "fc."): v for k, v in tensors.items()}
model.load_state_dict(state)
model.eval()
io, _ = load_safetensors(sys.argv[2])
with torch.no_grad():
    y = model(io["input"])
diff = (y - io["output"]).abs().max().item()
print("classes", info["classes"], "max diff", diff)
if diff > 1e-4:
    sys.exit("finch and torchvision outputs differ by %g" % diff)
print("match")
