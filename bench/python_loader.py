"""finch.Loader (finch's C++ pipeline, from Python) against torchvision's DataLoader + PIL,
the same transforms (RandomResizedCrop SIZE, horizontal flip, ToTensor + Normalize), batch 32,
2 workers each, in one process, alternating rounds (A B A B ...):
  1. the loader alone (images/s delivered to the Python loop);
  2. an ordinary PyTorch training loop fed by each loader: torchvision ResNet-18 at
     TRAIN_SIZE (compute-bound on few cores) and a small CNN at SIZE (data-bound).
Prints one line per round, then medians and ratios as a Markdown table with the CPU model.

usage: PYTHONPATH=build/python /usr/bin/python3 bench/python_loader.py
           [--root /tmp/finch-bench-jpegs] [--size 448] [--rounds 3] [--batches 40]
           [--train-size 224] [--train-batches 6]
The image folder is made by bench/make_jpegs.py when missing (~500x375 JPEGs).
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

import torch
import torchvision
import torchvision.transforms as T

import finch

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def finch_loader(root, size, workers, batch):
    recipe = {"data": {"format": "imagefolder", "root": root, "workers": workers,
                       "val_fraction": 0.0, "mean": MEAN, "std": STD,
                       "train_transforms": [{"type": "random_resized_crop", "size": size},
                                            {"type": "hflip", "p": 0.5}]},
              "model": {"input_size": size},
              "train": {"batch_size": batch}}
    return finch.Loader(recipe, "train")


def torch_loader(root, size, workers, batch):
    tf = T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize(MEAN, STD)])
    dataset = torchvision.datasets.ImageFolder(os.path.join(root, "train"), tf)
    return torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=True,
                                       num_workers=workers, persistent_workers=True)


def endless(loader):
    while True:
        for batch in loader:
            yield batch


def loader_rate(batches, count, warmup=2):
    for _ in range(warmup):
        next(batches)
    start, n = time.perf_counter(), 0
    for _ in range(count):
        n += next(batches)[0].shape[0]
    return n / (time.perf_counter() - start)


def small_cnn():
    """A light network (three strided convolutions): the loop is then data-bound, as a
    linear probe or a small model on many cores is."""
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 7, stride=4, padding=3), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(32, 64, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(64, 4))


def train_rate(batches, count, make_net, warmup=1):
    torch.manual_seed(0)
    net = make_net()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

    def step(images, labels):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(images), labels).backward()
        opt.step()

    for _ in range(warmup):
        step(*next(batches))
    start, n = time.perf_counter(), 0
    for _ in range(count):
        images, labels = next(batches)
        step(images, labels)
        n += images.shape[0]
    return n / (time.perf_counter() - start)


def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown CPU"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default="/tmp/finch-bench-jpegs")
    ap.add_argument("--size", type=int, default=448)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--train-size", type=int, default=224)
    ap.add_argument("--train-batches", type=int, default=6)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    if not os.path.isdir(os.path.join(args.root, "train")):
        subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "make_jpegs.py"),
                        args.root, "--classes", "4", "--per-class", "100"], check=True)
    torch.set_num_threads(os.cpu_count())
    loops = {"resnet18": (args.train_size, lambda: torchvision.models.resnet18(num_classes=4)),
             "small": (args.size, small_cnn)}
    rows = {key: {"finch": [], "torch": []} for key in ["loader", *loops]}
    makers = {"finch": finch_loader, "torch": torch_loader}
    for r in range(args.rounds):
        for name, make in makers.items():
            rate = loader_rate(endless(make(args.root, args.size, args.workers, 32)), args.batches)
            rows["loader"][name].append(rate)
            print(f"round {r + 1} loader {args.size}px {name}: {rate:.1f} img/s", flush=True)
        for loop, (size, make_net) in loops.items():
            for name, make in makers.items():
                rate = train_rate(endless(make(args.root, size, args.workers, 32)),
                                  args.train_batches if loop == "resnet18" else args.batches,
                                  make_net)
                rows[loop][name].append(rate)
                print(f"round {r + 1} {loop} training loop {size}px {name}: {rate:.1f} img/s",
                      flush=True)
    print(f"\n{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{args.workers} loader workers, batch 32, {args.rounds} rounds (median)\n")
    print("| what | finch.Loader img/s | DataLoader + PIL img/s | ratio |")
    print("| --- | --- | --- | --- |")
    labels = {"loader": f"loader alone, RandomResizedCrop {args.size} + flip + normalize",
              "resnet18": f"training loop, ResNet-18, {args.train_size} px",
              "small": f"training loop, small CNN, {args.size} px"}
    for key, label in labels.items():
        f, t = statistics.median(rows[key]["finch"]), statistics.median(rows[key]["torch"])
        print(f"| {label} | {f:.1f} | {t:.1f} | {f / t:.2f}x |")


if __name__ == "__main__":
    main()
