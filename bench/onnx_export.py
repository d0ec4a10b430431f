"""`finch export --format onnx` checked on real images in ONNX Runtime (onnxruntime-node):
top-1 agreement and the largest logit difference against finch's own inference.

  1. A Fashion-MNIST model file (default: the newest runs/fashion-mnist-*/best.safetensors
     that `make demo` writes) on the whole 10,000-image test split.
  2. torchvision's ResNet-50 (random initialisation with BatchNorm statistics perturbed, as
     no ImageNet weights can be downloaded here), turned into a finch model file with
     `finch import`, on real photographs: grace_hopper.jpg (python-matplotlib-data) and the
     generated JPEGs of bench/make_jpegs.py, at 224 px.

usage: PYTHONPATH=build/python /usr/bin/python3 bench/onnx_export.py [--model M]
           [--npm build/npm] [--jpegs /tmp/finch-bench-jpegs] [--photos 32]
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torchvision

import finch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from pth_to_safetensors import save_safetensors  # noqa: E402

CLI = os.path.join(ROOT, "build", "finch")
ORT = os.path.join(ROOT, "tests", "parity", "onnx_runtime_reference.js")


def ort_logits(onnx, batch, npm, scratch):
    path = os.path.join(scratch, "input.f32")
    batch.contiguous().numpy().astype("<f4").tofile(path)
    env = dict(os.environ, NODE_PATH=os.path.join(npm, "node_modules"))
    out = subprocess.run(["node", ORT, onnx, path, *map(str, batch.shape)], env=env,
                         capture_output=True, text=True, check=True)
    return torch.tensor(json.loads(out.stdout)["logits"])


def compare(name, model_file, images, npm, scratch, chunk=500):
    onnx = os.path.join(scratch, "model.onnx")
    subprocess.run([CLI, "export", "-m", model_file, "-o", onnx, "--dynamic-batch"], check=True,
                   capture_output=True)
    model = finch.load_model(model_file)
    agree, diff, scale, n = 0, 0.0, 0.0, 0
    for start in range(0, len(images), chunk):
        batch = model.preprocess(images[start:start + chunk])
        want = model.forward(batch)[0]
        got = ort_logits(onnx, batch, npm, scratch)
        agree += int((got.argmax(1) == want.argmax(1)).sum())
        diff = max(diff, (got - want).abs().max().item())
        scale = max(scale, want.abs().max().item())
        n += batch.shape[0]
    print(f"| {name} | {n} | {100.0 * agree / n:.2f}% | {diff:.2e} | {scale:.1f} |", flush=True)


def resnet50_model_file(scratch):
    torch.manual_seed(0)
    net = torchvision.models.resnet50()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    weights = os.path.join(scratch, "resnet50.safetensors")
    save_safetensors(net.state_dict(), weights)
    out = os.path.join(scratch, "resnet50-finch.safetensors")
    subprocess.run([CLI, "import", "--arch", "resnet50", "--weights", weights, "--out", out],
                   check=True, capture_output=True)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--npm", default=os.path.join(ROOT, "build", "npm"))
    ap.add_argument("--jpegs", default="/tmp/finch-bench-jpegs")
    ap.add_argument("--photos", type=int, default=32)
    args = ap.parse_args()
    model = args.model or sorted(glob.glob(os.path.join(ROOT, "runs", "fashion-mnist-*",
                                                        "best.safetensors")))[-1]
    print("| model | images | top-1 agreement | max abs logit difference | max abs logit |")
    print("| --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as scratch:
        test = finch.open_dataset("idx", "/usr/share/datasets/fashion-mnist", "test")
        compare(f"Fashion-MNIST ResNet-20 ({os.path.relpath(model, ROOT)}), test split",
                model, [test.image(i) for i in range(len(test))], args.npm, scratch)
        if not os.path.isdir(os.path.join(args.jpegs, "train")):
            subprocess.run([sys.executable, os.path.join(HERE, "make_jpegs.py"), args.jpegs,
                            "--classes", "4", "--per-class", "100"], check=True)
        photos = sorted(glob.glob("/usr/share/**/grace_hopper.jpg", recursive=True))[:1]
        photos += sorted(glob.glob(os.path.join(args.jpegs, "train", "*", "*.jpg")))[:args.photos - 1]
        compare("torchvision ResNet-50 via finch import (random init), photographs, 224 px",
                resnet50_model_file(scratch), photos, args.npm, scratch, chunk=8)


if __name__ == "__main__":
    main()
