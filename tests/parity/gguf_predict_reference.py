"""torchvision's mobilenet_v3_small with the weights of a GGUF file, for `finch import` of it.

usage: gguf_predict_reference.py WEIGHTS.gguf IMAGE_DIR RESULT_OUT.json
Writes a few generated PNG images (seeded: a page of text lines, coloured blobs, noise, a
gradient; different sizes and aspect ratios so Resize and CenterCrop both matter) to
IMAGE_DIR, reads the GGUF with tests/parity/gguf_writer.py's reader (independent of finch's),
loads it strictly into torchvision's mobilenet_v3_small and runs PIL decode, Resize(256),
CenterCrop(224), ToTensor, Normalize(ImageNet), the model and softmax. Writes
{"classes": [...metadata class names...], "images": [{"path", "probs"}]}.
"""
import json
import os
import sys

import numpy as np
import torch
import torchvision
from PIL import Image, ImageDraw
from torchvision import transforms

import gguf_writer


def make_images(folder):
    rng = np.random.default_rng(5)
    paths = []

    page = Image.new("RGB", (300, 420), (250, 250, 245))
    draw = ImageDraw.Draw(page)
    for y in range(30, 400, 18):
        draw.rectangle([24, y, 24 + int(rng.integers(120, 260)), y + 6], fill=(30, 30, 40))
    paths.append(("page.png", page))

    blobs = Image.new("RGB", (360, 270), (235, 225, 200))
    draw = ImageDraw.Draw(blobs)
    for _ in range(14):
        x, y, r = (int(v) for v in rng.integers([0, 0, 15], [360, 270, 60]))
        draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(int(c) for c in rng.integers(40, 255, 3)))
    paths.append(("blobs.png", blobs))

    noise = Image.fromarray(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8))
    paths.append(("noise.png", noise))

    yy, xx = np.mgrid[0:200, 0:500]
    gradient = np.stack([xx * 255 // 499, yy * 255 // 199, (xx + yy) * 255 // 698], -1).astype(np.uint8)
    paths.append(("gradient.png", Image.fromarray(gradient)))

    out = []
    for name, image in paths:
        path = os.path.join(folder, name)
        image.save(path)
        out.append(path)
    return out


def main():
    weights, folder, result_path = sys.argv[1:4]
    metadata, tensors, _ = gguf_writer.read(weights)
    num_classes = tensors["classifier.3.weight"].shape[0]
    model = torchvision.models.mobilenet_v3_small(weights=None, num_classes=num_classes)
    state = model.state_dict()
    # load_state_dict copies into each buffer's own dtype (num_batches_tracked is int64).
    model.load_state_dict({k: v.to(state[k].dtype) for k, v in tensors.items()}, strict=True)
    model.eval()
    pipeline = transforms.Compose([
        transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
        transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    images = []
    with torch.no_grad():
        for path in make_images(folder):
            x = pipeline(Image.open(path).convert("RGB")).unsqueeze(0)
            images.append({"path": path, "probs": torch.softmax(model(x), 1)[0].tolist()})
    classes = [metadata.get(f"mobilenet.class_{i}", f"class_{i}") for i in range(num_classes)]
    result = {"classes": classes, "images": images}
    with open(result_path, "w") as f:
        json.dump(result, f)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
