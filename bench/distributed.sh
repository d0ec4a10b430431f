#!/usr/bin/env bash
# Data-parallel training on this machine (docs/distributed.md):
#   1. all-reduce time vs message size over 2 ranks on loopback (`finch bench allreduce`
#      under torchrun), and between two network namespaces (scripts/two_hosts.sh, root only);
#   2. the Fashion-MNIST demo recipe trained by 1 process x 2 threads (batch 128) and by
#      2 ranks x 1 thread (batch 64 each: the same global batch), optionally 2 ranks in two
#      namespaces: img/s, wall time, all-reduce ms and MB per step, test top-1.
#
# usage: bench/distributed.sh [EPOCHS=8] [OUT=runs/distributed-bench] [NETNS=auto|0|1]
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${1:-8}
OUT=${2:-runs/distributed-bench}
NETNS=${3:-auto}
FINCH=$PWD/build/finch
PY=/usr/bin/python3
RECIPE=configs/fashion_mnist.yaml
DATA=/usr/share/datasets/fashion-mnist
# Debian's torchrun 1.13 on Python 3.11 cannot parse its default --redirects/--tee 0.
TORCHRUN="/usr/bin/torchrun --nproc_per_node 2 -r 2 -t 2 --no_python"
if [ "$NETNS" = auto ]; then NETNS=$([ "$(id -u)" = 0 ] && command -v ip >/dev/null && echo 1 || echo 0); fi
mkdir -p "$OUT"

echo "== $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg), $(date -u +%FT%TZ)"

echo "== all-reduce over 2 ranks on loopback"
$TORCHRUN "$FINCH" bench allreduce --max-mb 64 --repeats 10 | tee "$OUT/allreduce_loopback.txt"

if [ "$NETNS" = 1 ]; then
  echo "== all-reduce over 2 ranks in two network namespaces (veth)"
  scripts/two_hosts.sh up
  E="WORLD_SIZE=2 LOCAL_WORLD_SIZE=1 LOCAL_RANK=0 MASTER_ADDR=10.77.0.1 MASTER_PORT=29610"
  env $E RANK=1 scripts/two_hosts.sh run 1 "$FINCH" bench allreduce --max-mb 64 --repeats 10 &
  env $E RANK=0 scripts/two_hosts.sh run 0 "$FINCH" bench allreduce --max-mb 64 --repeats 10 |
    tee "$OUT/allreduce_netns.txt"
  wait
fi

train() {  # name, then finch train arguments
  local name=$1
  shift
  rm -rf "${OUT:?}/$name"
  local start=$(date +%s.%N)
  "$@" --config $RECIPE --out "$OUT/$name" --set train.epochs="$EPOCHS" --set train.progress=none \
    2>&1 | tail -n 3
  $PY -c "print($(date +%s.%N) - $start)" > "$OUT/$name.wall_s"
  "$FINCH" eval --model "$OUT/$name/best.safetensors" --dataset idx --root $DATA --split test \
    --json > "$OUT/$name.test.json"
}

echo "== Fashion-MNIST, $EPOCHS epochs: 1 process x 2 threads, batch 128"
train single "$FINCH" train --set threads=2
echo "== Fashion-MNIST, $EPOCHS epochs: 2 ranks x 1 thread, batch 2 x 64 (finch train --nproc 2)"
train ranks2 "$FINCH" train --nproc 2 --set threads=1 --set train.batch_size=64
if [ "$NETNS" = 1 ]; then
  echo "== Fashion-MNIST, $EPOCHS epochs: 2 ranks x 1 thread in two network namespaces"
  E="WORLD_SIZE=2 LOCAL_WORLD_SIZE=1 LOCAL_RANK=0 MASTER_ADDR=10.77.0.1 MASTER_PORT=29611"
  rm -rf "${OUT:?}/netns"
  env $E RANK=1 scripts/two_hosts.sh run 1 "$FINCH" train --config $RECIPE --out "$OUT/netns" \
    --set train.epochs="$EPOCHS" --set train.progress=none --set threads=1 \
    --set train.batch_size=64 >/dev/null 2>&1 &
  train netns env $E RANK=0 scripts/two_hosts.sh run 0 "$FINCH" train --set threads=1 \
    --set train.batch_size=64
  wait
  scripts/two_hosts.sh down
fi

echo "== summary"
$PY - "$OUT" <<'EOF'
import json, os, statistics, sys
out = sys.argv[1]
print("| run | img/s (median epoch) | wall | all-reduce ms/step | MB/step | test top-1 |")
print("| --- | --- | --- | --- | --- | --- |")
for name in ("single", "ranks2", "netns"):
    if not os.path.exists(os.path.join(out, name, "metrics.jsonl")):
        continue
    records = [json.loads(l) for l in open(os.path.join(out, name, "metrics.jsonl")) if l.strip()]
    ips = statistics.median(r["img_per_s"] for r in records)
    ar = [r["allreduce_ms_per_step"] for r in records if "allreduce_ms_per_step" in r]
    mb = records[-1].get("allreduce_mb_per_step")
    wall = float(open(os.path.join(out, name + ".wall_s")).read())
    top1 = json.load(open(os.path.join(out, name + ".test.json")))["top1"]
    print("| %s | %.0f | %.0f s | %s | %s | %.2f%% |" % (
        name, ips, wall, "%.2f" % statistics.median(ar) if ar else "-",
        "%.2f" % mb if mb else "-", 100 * top1))
EOF
