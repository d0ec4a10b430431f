"""PyTorch peer for finch's Fashion-MNIST training throughput.

The same model as finch's `resnet20` (CIFAR-style ResNet-20, 3x3 stem, projection
shortcuts, torchvision BasicBlock), the same batch, optimizer (SGD Nesterov + weight decay,
OneCycle) and augmentation (pad-crop 2 + horizontal flip), with a standard DataLoader of
PIL images and torchvision transforms. Reports training images/second after warm-up.

usage: /usr/bin/python3 fashion_mnist_train.py [--steps 100] [--warmup 10] [--batch 128]
                                                [--threads 2] [--workers 2]
"""
import argparse
import gzip
import json
import time

import numpy as np
import torch
import torch.nn as nn
import torchvision.transforms as T
from PIL import Image
from torchvision.models.resnet import BasicBlock


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


class FashionMNIST(torch.utils.data.Dataset):
    def __init__(self, root, transform):
        self.images = read_idx(f"{root}/train-images-idx3-ubyte.gz")
        self.labels = read_idx(f"{root}/train-labels-idx1-ubyte.gz").astype(np.int64)
        self.transform = transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.images[i]).convert("RGB")), self.labels[i]


class ResNet20(nn.Module):
    def __init__(self, width=16, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        layers, inplanes = [], width
        for stage, planes in enumerate([width, 2 * width, 4 * width]):
            blocks = []
            for b in range(3):
                stride = 2 if (b == 0 and stage > 0) else 1
                down = None
                if stride != 1 or inplanes != planes:
                    down = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
                blocks.append(BasicBlock(inplanes, planes, stride, down))
                inplanes = planes
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.fc = nn.Linear(inplanes, num_classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(x.mean((2, 3)), 1))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--root", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    transform = T.Compose([T.RandomCrop(28, padding=2), T.RandomHorizontalFlip(), T.ToTensor(),
                           T.Normalize([0.286] * 3, [0.353] * 3)])
    loader = torch.utils.data.DataLoader(FashionMNIST(a.root, transform), batch_size=a.batch, shuffle=True,
                                         num_workers=a.workers, drop_last=True, persistent_workers=a.workers > 0)
    model = ResNet20()
    decay = [p for p in model.parameters() if p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.dim() <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": 5e-4}, {"params": no_decay, "weight_decay": 0}],
                          lr=0.2, momentum=0.9, nesterov=True)
    total = a.warmup + a.steps
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.2, total_steps=total, pct_start=0.25,
                                                cycle_momentum=False)
    model.train()
    step, start = 0, None
    while step < total:
        for x, y in loader:
            if step == a.warmup:
                start = time.perf_counter()
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step >= total:
                break
    seconds = time.perf_counter() - start
    with open("/proc/loadavg") as f:
        load = float(f.read().split()[0])
    print(json.dumps({"peer": "pytorch", "torch": torch.__version__, "threads": a.threads, "workers": a.workers,
                      "batch": a.batch, "steps": a.steps, "img_per_s": a.steps * a.batch / seconds,
                      "load_avg_1min": load}))


if __name__ == "__main__":
    main()
