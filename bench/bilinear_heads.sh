#!/usr/bin/env bash
# Training throughput of the pooling heads on the Fashion-MNIST recipe (ResNet-20 width 16,
# batch 128, 2 threads, 2 loader workers; `finch bench train`, the real trainer): linear,
# full bilinear (64^2 = 4,096 features) and compact bilinear (Tensor Sketch, 2,048 features,
# as bench/methods.sh runs it), alternated ROUNDS times so machine noise hits all alike.
# Prints each run and the medians. Goal (issue 18): compact within 2x of full.
#
# usage: bench/bilinear_heads.sh [ROUNDS=3] [STEPS=100]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
STEPS=${2:-100}
FINCH=build/finch
declare -A ARGS=(
  [linear]=""
  [full]="--set model.head=bilinear"
  [compact]="--set model.head=bilinear --set model.bilinear.type=compact --set model.bilinear.dim=2048"
)
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
for r in $(seq 1 "$ROUNDS"); do
  for head in linear full compact; do
    # shellcheck disable=SC2086
    ips=$("$FINCH" bench train --config configs/fashion_mnist.yaml --set threads=2 --set data.workers=2 \
      ${ARGS[$head]} --steps "$STEPS" --warmup 10 --json 2>/dev/null |
      python3 -c 'import json,sys; print("%.1f" % json.load(sys.stdin)["img_per_s"])')
    echo "$head $ips" | tee -a "$OUT"
  done
done
python3 - "$OUT" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    head, ips = line.split()
    runs.setdefault(head, []).append(float(ips))
med = {h: statistics.median(v) for h, v in runs.items()}
print("| head | train img/s (median; runs) | vs full bilinear |")
print("| --- | --- | --- |")
for h, v in runs.items():
    print(f"| {h} | {med[h]:.0f} ({', '.join(f'{x:.0f}' for x in v)}) | {med[h] / med['full']:.2f}x |")
PY
