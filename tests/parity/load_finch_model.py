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
arch = info["arch"]["backbone"]
classifier = "classifier.6." if arch.startswith("vgg") else "fc."    # torchvision's name
extra = {"aux_logits": info["arch"].get("aux_logits", True), "init_weights": False} \
    if arch == "inception_v3" else {}
model = getattr(torchvision.models, arch)(num_classes=info["arch"]["num_classes"], **extra)
state = {k.removeprefix("backbone.").replace("head.fc.", classifier): v for k, v in tensors.items()}
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
