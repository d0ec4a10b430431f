"""PyTorch peer for `finch bench train` on bench/configs/resnet50_224_train.yaml.

torchvision's resnet50 (random init, one class per folder), batch 16, SGD momentum 0.9 with
weight decay 1e-4 on weights only (finch's default: no decay on norm weights and biases),
constant lr 0.01, cross-entropy; torchvision ImageFolder (PIL), RandomResizedCrop(224) +
RandomHorizontalFlip + ToTensor + Normalize through a DataLoader with `workers` processes
(persistent). Its best settings: `--channels-last` converts the model and every batch.
`--bf16-autocast` runs the forward pass under torch.autocast("cpu", torch.bfloat16) (PyTorch's
CPU mixed precision; the loss on fp32 logits), as finch's train.precision: bf16-mixed.
Warm-up steps are excluded; each step is timed from the end of the previous one, as finch
does. Prints one JSON object.

usage: /usr/bin/python3 imagefolder_train.py ROOT [--size 224] [--batch 16] [--steps 10]
                                             [--warmup 3] [--threads 2] [--workers 2]
                                             [--channels-last] [--bf16-autocast]
"""
import argparse
import json
import resource
import statistics
import time

import torch
import torch.nn as nn
import torchvision
import torchvision.transforms as T
from torchvision.datasets import ImageFolder


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--bf16-autocast", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    tf = T.Compose([T.RandomResizedCrop(a.size), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    ds = ImageFolder(f"{a.root}/train", tf)
    loader = torch.utils.data.DataLoader(ds, batch_size=a.batch, shuffle=True, drop_last=True,
                                         num_workers=a.workers, persistent_workers=True)
    model = getattr(torchvision.models, a.arch)(num_classes=len(ds.classes))
    fmt = torch.channels_last if a.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt).train()
    decay = [p for n, p in model.named_parameters() if p.dim() > 1]
    no_decay = [p for n, p in model.named_parameters() if p.dim() <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": 1e-4},
                           {"params": no_decay, "weight_decay": 0.0}], lr=0.01, momentum=0.9)
    criterion = nn.CrossEntropyLoss()

    def batches():
        while True:
            for b in loader:
                yield b

    it = batches()
    ends = []
    for _ in range(a.warmup + a.steps):
        x, y = next(it)
        x = x.contiguous(memory_format=fmt)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16_autocast):
            logits = model(x)
        loss = criterion(logits.float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()
        ends.append(time.perf_counter())
    step_ms = [1000 * (ends[i] - ends[i - 1]) for i in range(a.warmup, len(ends))]
    seconds = ends[-1] - ends[a.warmup - 1]
    with open("/proc/loadavg") as f:
        load = float(f.read().split()[0])
    print(json.dumps({"bench": "train", "arch": a.arch, "batch": a.batch, "steps": a.steps,
                      "channels_last": a.channels_last, "bf16_autocast": a.bf16_autocast,
                      "img_per_s": a.batch * a.steps / seconds,
                      "step_ms": {"p50": statistics.median(step_ms)},
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "load_avg_1min": load}))


if __name__ == "__main__":
    main()
