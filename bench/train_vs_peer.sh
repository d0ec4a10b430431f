#!/usr/bin/env bash
# Training throughput, finch vs the PyTorch peer, Fashion-MNIST ResNet-20 (batch 128, SGD
# Nesterov + OneCycle, pad-crop + flip, 2 threads, 2 loader workers), alternating A B A B
# so machine noise hits both sides alike. Prints each run and the medians and ratio.
#
# usage: bench/train_vs_peer.sh [ROUNDS=3] [STEPS=150]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
STEPS=${2:-150}
WARMUP=10
FINCH=build/finch
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

finch_run() {
  local dir="$TMP/run$1"
  # One epoch capped at WARMUP+STEPS steps, no validation; img/s from finch's metrics record.
  "$FINCH" train --config configs/fashion_mnist.yaml --out "$dir" --set threads=2 \
    --set train.epochs=1 --set train.max_steps_per_epoch=$((WARMUP + STEPS)) \
    --set data.val_fraction=0 --set train.progress=none >/dev/null 2>&1
  /usr/bin/python3 -c "import json,sys; print(json.loads(open(sys.argv[1]).readline())['img_per_s'])" "$dir/metrics.jsonl"
}

peer_run() {
  /usr/bin/python3 bench/peer/fashion_mnist_train.py --steps "$STEPS" --warmup "$WARMUP" --threads 2 --workers 2 \
    | /usr/bin/python3 -c "import json,sys; print(json.loads(sys.stdin.read())['img_per_s'])"
}

finch_results=(); peer_results=()
for r in $(seq 1 "$ROUNDS"); do
  f=$(finch_run "$r"); p=$(peer_run)
  echo "round $r: finch $f img/s, pytorch $p img/s"
  finch_results+=("$f"); peer_results+=("$p")
done
/usr/bin/python3 - "${finch_results[*]}" "${peer_results[*]}" <<'PY'
import statistics, sys
f = [float(x) for x in sys.argv[1].split()]
p = [float(x) for x in sys.argv[2].split()]
mf, mp = statistics.median(f), statistics.median(p)
print(f"median finch {mf:.0f} img/s, pytorch {mp:.0f} img/s, ratio {mf / mp:.2f}x")
PY
