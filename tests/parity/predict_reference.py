"""torchvision's own ImageNet evaluation pipeline on a real photograph, for `finch import`.

usage: predict_reference.py IMAGE WEIGHTS_OUT.safetensors RESULT_OUT.json
Builds torchvision's resnet18 with seeded random weights (BatchNorm statistics perturbed, the
classifier scaled down so that the top-5 probabilities lie within a few percent of each other:
their order then exposes any difference in decoding or resizing), writes them under
torchvision's names (like a downloaded state dict) and runs PIL decode, Resize(256),
CenterCrop(224), ToTensor, Normalize(ImageNet) and the model; writes the top-5 classes and
probabilities.
"""
import json
import sys

import torch
import torchvision
from PIL import Image
from torchvision import transforms

from finch_ref import save_safetensors

image_path, weights_path, result_path = sys.argv[1:4]
torch.manual_seed(7)
model = torchvision.models.resnet18(weights=None)
with torch.no_grad():
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.uniform_(0.5, 1.5)
    model.fc.weight.mul_(0.25)
model.eval()
save_safetensors(model.state_dict(), weights_path)
pipeline = transforms.Compose([
    transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
    transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
x = pipeline(Image.open(image_path).convert("RGB")).unsqueeze(0)
with torch.no_grad():
    probs = torch.softmax(model(x), 1)[0]
top = torch.topk(probs, 5)
result = {"topk": [{"index": int(i), "prob": float(p)} for p, i in zip(top.values, top.indices)]}
with open(result_path, "w") as f:
    json.dump(result, f)
print(json.dumps(result))
