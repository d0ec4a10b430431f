"""PyTorch peer for `finch bench data`: torchvision ImageFolder (PIL decode),
RandomResizedCrop(size) + RandomHorizontalFlip + ToTensor + Normalize, a shuffled
DataLoader with `workers` worker processes (workers=1 means one worker process, as finch's
one loader thread), batch 32, warm-up batches excluded. Prints one JSON object.

usage: /usr/bin/python3 data.py ROOT [--size 448] [--workers 2] [--batch 32] [--batches 20]
                                      [--warmup 2]
"""
import argparse
import json
import time

import torch
import torchvision.transforms as T
from torchvision.datasets import ImageFolder


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("--size", type=int, default=448)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    tf = T.Compose([T.RandomResizedCrop(args.size), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    ds = ImageFolder(f"{args.root}/train", tf)
    loader = torch.utils.data.DataLoader(ds, batch_size=args.batch, shuffle=True, drop_last=True,
                                         num_workers=args.workers, persistent_workers=True)

    def batches():
        while True:
            for b in loader:
                yield b

    it = batches()
    for _ in range(args.warmup):
        next(it)
    start = time.perf_counter()
    n = 0
    for _ in range(args.batches):
        n += next(it)[0].shape[0]
    seconds = time.perf_counter() - start
    with open("/proc/loadavg") as f:
        load = float(f.read().split()[0])
    print(json.dumps({"bench": "data", "size": args.size, "workers": args.workers,
                      "batch": args.batch, "batches": args.batches, "img_per_s": n / seconds,
                      "load_avg_1min": load}))


if __name__ == "__main__":
    main()
