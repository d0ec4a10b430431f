#!/usr/bin/env bash
# Data pipeline throughput, finch vs the PyTorch peer: JPEG decode + random_resized_crop
# SIZE + hflip + normalize + batch 32 from a generated folder of ~500x375 JPEGs
# (bench/make_jpegs.py), at 2 and 1 workers, finch and PyTorch alternately (A B A B ...).
# Prints each run with the 1-minute load average, then medians and ratios.
#
# usage: bench/data_vs_peer.sh [ROUNDS=3] [BATCHES=20] [SIZE=448] [ROOT=/tmp/finch-bench-jpegs]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
BATCHES=${2:-20}
SIZE=${3:-448}
ROOT=${4:-/tmp/finch-bench-jpegs}
FINCH=build/finch
[[ -d $ROOT/train ]] || /usr/bin/python3 bench/make_jpegs.py "$ROOT" --classes 4 --per-class 100
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
for workers in 2 1; do
  for r in $(seq 1 "$ROUNDS"); do
    f=$("$FINCH" bench data --dataset imagefolder --root "$ROOT" --size "$SIZE" --workers "$workers" \
          --batches "$BATCHES" --json)
    p=$(/usr/bin/python3 bench/peer/data.py "$ROOT" --size "$SIZE" --workers "$workers" --batches "$BATCHES")
    echo "{\"w\": $workers, \"finch\": $f, \"pytorch\": $p}" >>"$OUT"
    /usr/bin/python3 -c "
import json,sys
x=json.loads(open(sys.argv[1]).readlines()[-1])
print(f\"workers $workers round $r: finch {x['finch']['img_per_s']:.1f} img/s (load {x['finch']['load_avg_1min']:.2f}), pytorch {x['pytorch']['img_per_s']:.1f} img/s (load {x['pytorch']['load_avg_1min']:.2f})\")" "$OUT"
  done
done
/usr/bin/python3 - "$OUT" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
print("| workers | finch img/s (median) | PyTorch img/s (median) | ratio | finch peak RSS MiB | load (1 min, median) |")
print("| --- | --- | --- | --- | --- | --- |")
for w in (2, 1):
    rs = [r for r in runs if r["w"] == w]
    f = statistics.median(r["finch"]["img_per_s"] for r in rs)
    p = statistics.median(r["pytorch"]["img_per_s"] for r in rs)
    rss = statistics.median(r["finch"]["peak_rss_mib"] for r in rs)
    load = statistics.median(r["finch"]["load_avg_1min"] for r in rs)
    print(f"| {w} | {f:.1f} | {p:.1f} | **{f / p:.2f}x** | {rss:.0f} | {load:.2f} |")
PY
