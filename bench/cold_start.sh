#!/usr/bin/env bash
# Cold start: process start to the answer for one image, ResNet-50 224 (random weights, 1000
# classes), 2 threads, fp32, alternating rounds:
#   finch     `finch predict --model M --dtype fp32 IMAGE` (JPEG decode, resize 256, crop 224)
#   PyTorch   bench/peer/predict_one.py: import torch + torchvision, build, load a .pth, PIL
#             decode + torchvision transforms, forward
#   ORT       bench/peer/ort_infer.js --warmup 0 --iters 1: node start, session creation with
#             graph optimisations, one run on a random input (no image decoding: onnxruntime-node
#             has none)
# The page cache is warm (each side runs once before timing); the figure is wall time measured
# around the whole process. Prints each run and a table of medians.
#
# usage: bench/cold_start.sh [ROUNDS=5] [WORK=/tmp/finch-bench-cold]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
WORK=${2:-/tmp/finch-bench-cold}
FINCH=build/finch
PY=/usr/bin/python3
mkdir -p "$WORK"
if [[ ! -f $WORK/resnet50.safetensors ]]; then
  $PY - "$WORK" <<'PY'
import sys, torch, torchvision
sys.path.insert(0, "scripts")
from pth_to_safetensors import save_safetensors
from PIL import Image
torch.manual_seed(0)
sd = torchvision.models.resnet50().state_dict()
torch.save(sd, sys.argv[1] + "/resnet50.pth")
save_safetensors(sd, sys.argv[1] + "/resnet50_tv.safetensors")
Image.effect_noise((640, 480), 60).convert("RGB").save(sys.argv[1] + "/photo.jpg", quality=90)
PY
  $FINCH import --arch resnet50 --weights "$WORK/resnet50_tv.safetensors" --out "$WORK/resnet50.safetensors" >/dev/null
  $PY bench/peer/export_resnet50_onnx.py "$WORK/resnet50.onnx" >/dev/null 2>&1
fi
export NODE_PATH=build/npm/node_modules

declare -A CMD=(
  [finch]="$FINCH predict --model $WORK/resnet50.safetensors --dtype fp32 --threads 2 --json $WORK/photo.jpg"
  [pytorch]="$PY bench/peer/predict_one.py $WORK/resnet50.pth $WORK/photo.jpg --threads 2"
  [ort]="node bench/peer/ort_infer.js $WORK/resnet50.onnx --warmup 0 --iters 1 --threads 2"
)
SIDES=(finch pytorch ort)
for s in "${SIDES[@]}"; do ${CMD[$s]} >/dev/null 2>&1; done  # warm the page cache
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
for r in $(seq 1 "$ROUNDS"); do
  for s in "${SIDES[@]}"; do
    t=$($PY -c 'import subprocess, sys, time
t = time.perf_counter()
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(f"{time.perf_counter() - t:.3f}")' ${CMD[$s]})
    echo "$s $t" | tee -a "$OUT"
  done
done
$PY - "$OUT" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" <<'PY'
import statistics, sys
runs = [l.split() for l in open(sys.argv[1])]
print(f"\n{sys.argv[2]}; seconds from process start to the answer, median (runs)\n")
print("| side | seconds |")
print("| --- | --- |")
for side in dict.fromkeys(r[0] for r in runs):
    v = [float(r[1]) for r in runs if r[0] == side]
    print(f"| {side} | {statistics.median(v):.2f} ({', '.join(f'{x:.2f}' for x in v)}) |")
PY
