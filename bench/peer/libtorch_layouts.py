#!/usr/bin/env python3
"""ResNet-50 fp32 inference in Debian's PyTorch 1.13 through every layout LibTorch offers, to
see whether any of them is faster than what finch already does (issue 18's fp32 goal):
  channels_last               eager, NHWC tensors (what finch uses, through oneDNN)
  mkldnn_blocked              torch.utils.mkldnn.to_mkldnn on the BN-folded model: oneDNN's
                              blocked tensors (nChw16c) and pre-reordered weights
  jit_optimize_for_inference  torch.jit.script + optimize_for_inference: frozen, BN folded,
                              oneDNN layouts and fused conv + ReLU / add
Run with OPENBLAS_NUM_THREADS=1, as finch sets it for convolutional models:
  OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/peer/libtorch_layouts.py [BATCHES=1,8] [ITERS=8]
Prints img/s of two alternated rounds per layout and batch (224 px, 2 threads)."""
import copy
import sys
import time

import torch
import torch.fx.experimental.optimization as fx_optimization
import torchvision
from torch.utils import mkldnn

torch.set_num_threads(2)
torch.manual_seed(0)
batches = [int(b) for b in sys.argv[1].split(",")] if len(sys.argv) > 1 else [1, 8]
iters = int(sys.argv[2]) if len(sys.argv) > 2 else 8
base = torchvision.models.resnet50().eval()


def seconds_per_forward(forward, x):
    with torch.no_grad():
        for _ in range(2):
            forward(x)
        start = time.perf_counter()
        for _ in range(iters):
            forward(x)
        return (time.perf_counter() - start) / iters


channels_last = copy.deepcopy(base).to(memory_format=torch.channels_last)
blocked = mkldnn.to_mkldnn(fx_optimization.fuse(copy.deepcopy(base)))
frozen = torch.jit.optimize_for_inference(torch.jit.script(copy.deepcopy(base)))
sides = {
    "channels_last": lambda x: channels_last(x.contiguous(memory_format=torch.channels_last)),
    "mkldnn_blocked": lambda x: blocked(x.to_mkldnn()).to_dense(),
    "jit_optimize_for_inference": frozen,
}
for batch in batches:
    x = torch.randn(batch, 3, 224, 224)
    rates = {name: [] for name in sides}
    for _ in range(2):
        for name, forward in sides.items():
            rates[name].append(batch / seconds_per_forward(forward, x))
    for name, values in rates.items():
        print(f"batch {batch} {name}: " + " ".join(f"{v:.2f}" for v in values) + " img/s",
              flush=True)
