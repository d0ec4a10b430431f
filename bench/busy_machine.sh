#!/usr/bin/env bash
# Training throughput on a quiet machine and with another process keeping one CPU busy (a
# shell busy-loop started and stopped by this script), finch against the PyTorch peer under
# the same contention. Fashion-MNIST ResNet-20, batch 128, 2 loader workers
# (configs/fashion_mnist.yaml vs bench/peer/fashion_mnist_train.py). Sides, run alternately:
#   finch auto       threads: 0, the default (the thread governor of core/threads.h)
#   finch 2 threads  threads: 2 fixed
#   finch 1 thread   threads: 1 fixed
#   PyTorch 2 / 1    torch.set_num_threads(2 / 1)
# The goal: under contention, the default keeps about half its quiet throughput (one of two
# CPUs left), not the 3-5x loss of OpenMP threads waiting at barriers for a parked thread.
#
# usage: bench/busy_machine.sh [ROUNDS=2] [STEPS=150]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-2}
STEPS=${2:-150}
FINCH=build/finch
PY=/usr/bin/python3
OUT=$(mktemp)
HOG=""
cleanup() {
  [[ -n $HOG ]] && kill "$HOG" 2>/dev/null || true
  rm -f "$OUT"
}
trap cleanup EXIT

run_side() {  # machine side command...
  local machine=$1 side=$2
  shift 2
  local json
  json=$("$@" 2>/dev/null)
  echo "{\"machine\": \"$machine\", \"side\": \"$side\", \"r\": $json}" >>"$OUT"
  echo "$machine $side: $(echo "$json" | $PY -c 'import json,sys; r=json.load(sys.stdin); print("%.1f img/s, %s threads at the end (load %.2f)" % (r["img_per_s"], r.get("threads"), r["load_avg_1min"]))')"
}

for machine in quiet busy; do
  if [[ $machine == busy ]]; then
    sh -c 'while :; do :; done' &
    HOG=$!
    sleep 3
  fi
  for _ in $(seq 1 "$ROUNDS"); do
    for t in 0 2 1; do
      side="finch_t$t"
      run_side "$machine" "$side" "$FINCH" bench train --config configs/fashion_mnist.yaml \
        --set threads=$t --set data.workers=2 --steps "$STEPS" --warmup 10 --json
    done
    for t in 2 1; do
      run_side "$machine" "pytorch_t$t" $PY bench/peer/fashion_mnist_train.py --steps "$STEPS" \
        --warmup 10 --threads $t --workers 2
    done
  done
  if [[ -n $HOG ]]; then kill "$HOG"; HOG=""; fi
done

$PY - "$OUT" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" "$(nproc)" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
print(f"\n{sys.argv[2]}, {sys.argv[3]} CPUs; img/s, median (runs)\n")
names = {"finch_t0": "finch auto (default)", "finch_t2": "finch 2 threads", "finch_t1": "finch 1 thread",
         "pytorch_t2": "PyTorch 2 threads", "pytorch_t1": "PyTorch 1 thread"}
print("| side | quiet | one CPU busy | busy / quiet |")
print("| --- | --- | --- | --- |")
for side, name in names.items():
    cells, med = [], {}
    for m in ("quiet", "busy"):
        v = [x["r"]["img_per_s"] for x in runs if x["side"] == side and x["machine"] == m]
        med[m] = statistics.median(v) if v else None
        cells.append("-" if not v else f"{med[m]:.1f} ({', '.join(f'{x:.0f}' for x in v)})")
    ratio = "-" if not med["quiet"] or not med["busy"] else f"{med['busy'] / med['quiet']:.2f}"
    print(f"| {name} | {cells[0]} | {cells[1]} | {ratio} |")
PY
