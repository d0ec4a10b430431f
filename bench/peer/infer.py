"""PyTorch peer for `finch bench infer`: torchvision ResNet-50 (random weights, 1000
classes), eval(), torch.inference_mode(), the same threads via torch.set_num_threads, and
channels_last when --channels-last is given (measure both: use whichever is faster as the
peer's best). --int8: PyTorch's own post-training static quantization (FX prepare/convert,
`get_default_qconfig_mapping("onednn")`, the oneDNN engine), calibrated on the timed batch as
`finch bench infer --dtype int8` does (speed only). Warm-up iterations are excluded. Prints
one JSON object like finch's.

usage: /usr/bin/python3 infer.py [--batch 1] [--size 224] [--threads 2] [--iters 20]
                                 [--warmup 3] [--channels-last] [--bf16 | --int8]
"""
import argparse
import json
import statistics
import time

import torch
import torchvision


def percentile(values, p):
    values = sorted(values)
    rank = p / 100 * (len(values) - 1)
    lo = int(rank)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (rank - lo) * (values[hi] - values[lo])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--int8", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = torchvision.models.resnet50().eval()
    x = torch.randn(args.batch, 3, args.size, args.size)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    if args.bf16:
        model = model.to(torch.bfloat16)
        x = x.to(torch.bfloat16)
    if args.int8:
        from torch.ao.quantization import get_default_qconfig_mapping
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
        torch.backends.quantized.engine = "onednn"
        prepared = prepare_fx(model, get_default_qconfig_mapping("onednn"), (x,))
        with torch.no_grad():
            prepared(x)
        model = convert_fx(prepared)
    times = []
    with torch.inference_mode():
        for _ in range(args.warmup):
            model(x)
        for _ in range(args.iters):
            start = time.perf_counter()
            model(x).sum().item()
            times.append(1000 * (time.perf_counter() - start))
    with open("/proc/loadavg") as f:
        load = float(f.read().split()[0])
    print(json.dumps({
        "bench": "infer", "model": "torchvision.resnet50", "batch": args.batch, "size": args.size,
        "threads": torch.get_num_threads(), "channels_last": args.channels_last, "bf16": args.bf16,
        "int8": args.int8,
        "img_per_s": 1000 * args.batch * args.iters / sum(times),
        "latency_ms": {"p50": percentile(times, 50), "p90": percentile(times, 90),
                       "p99": percentile(times, 99)},
        "median_ms": statistics.median(times), "load_avg_1min": load,
    }))


if __name__ == "__main__":
    main()
