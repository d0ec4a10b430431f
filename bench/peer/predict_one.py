"""PyTorch peer for the cold start of `finch predict` (bench/cold_start.sh): from process start,
import torch and torchvision, build ResNet-50, load a state dict (.pth), read one image with
PIL, resize 256 / center crop 224 / normalize (torchvision's eval transforms), forward in
inference mode, print the top-5 classes as JSON.

usage: /usr/bin/python3 predict_one.py WEIGHTS.pth IMAGE [--threads 2]
"""
import argparse
import json

import torch
import torchvision
from PIL import Image
from torchvision import transforms


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("weights")
    ap.add_argument("image")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model = torchvision.models.resnet50()
    model.load_state_dict(torch.load(a.weights, weights_only=True))
    model.eval()
    prep = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                               transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    x = prep(Image.open(a.image).convert("RGB")).unsqueeze(0)
    with torch.inference_mode():
        p = model(x).softmax(1)[0]
    top = p.topk(5)
    print(json.dumps({"top5": [[int(i), float(v)] for v, i in zip(top.values, top.indices)]}))


if __name__ == "__main__":
    main()
