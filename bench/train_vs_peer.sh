#!/usr/bin/env bash
# Training throughput, finch (`finch bench train`, the real trainer) vs the PyTorch peer, run
# alternately (finch, PyTorch, [PyTorch channels_last], repeated) so machine noise hits all
# sides alike. Warm-up steps are excluded on both sides. Cases:
#   fmnist    Fashion-MNIST ResNet-20, batch 128, SGD Nesterov + OneCycle, pad-crop + flip
#             (configs/fashion_mnist.yaml vs bench/peer/fashion_mnist_train.py)
#   resnet50  ResNet-50 at 224, batch 16, SGD momentum, random_resized_crop + flip from a
#             folder of JPEGs (bench/configs/resnet50_224_train.yaml vs
#             bench/peer/imagefolder_train.py: NCHW, channels_last, and channels_last with
#             finch's glibc allocator settings as env vars)
#   resnet50_bf16  the same in bf16 mixed precision: finch train.precision: bf16-mixed vs
#             PyTorch under torch.autocast("cpu", torch.bfloat16), NCHW and channels_last
# Both with 2 compute threads and 2 loader workers. Prints each run, then medians and ratios
# against the faster peer.
#
# usage: bench/train_vs_peer.sh [ROUNDS=3] [CASES="fmnist resnet50"; also resnet50_bf16] [JPEGS=/tmp/finch-bench-jpegs]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
CASES=${2:-"fmnist resnet50"}
JPEGS=${3:-/tmp/finch-bench-jpegs}
FINCH=build/finch
PY=/usr/bin/python3
# finch's allocator settings (apps/finch/main.cpp's mallopt calls) as glibc env vars, for
# the third ResNet-50 peer run.
TUNED="MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1073741824"
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT

record() {  # side case json
  echo "{\"side\": \"$1\", \"case\": \"$2\", \"r\": $3}" >>"$OUT"
  echo "$2 $1: $(echo "$3" | $PY -c 'import json,sys; r=json.load(sys.stdin); print("%.2f img/s (load %.2f)" % (r["img_per_s"], r["load_avg_1min"]))')"
}

for c in $CASES; do
  case $c in
    fmnist)
      finch_cmd=("$FINCH" bench train --config configs/fashion_mnist.yaml --set threads=2
                 --set data.workers=2 --steps 150 --warmup 10 --json)
      peers=("$PY bench/peer/fashion_mnist_train.py --steps 150 --warmup 10 --threads 2 --workers 2") ;;
    resnet50)
      [[ -d $JPEGS/train ]] || $PY bench/make_jpegs.py "$JPEGS" --classes 4 --per-class 100
      finch_cmd=("$FINCH" bench train --config bench/configs/resnet50_224_train.yaml
                 --set "data.root=$JPEGS" --steps 8 --warmup 2 --json)
      peers=("$PY bench/peer/imagefolder_train.py $JPEGS --steps 8 --warmup 2"
             "$PY bench/peer/imagefolder_train.py $JPEGS --steps 8 --warmup 2 --channels-last"
             "env $TUNED $PY bench/peer/imagefolder_train.py $JPEGS --steps 8 --warmup 2 --channels-last") ;;
    resnet50_bf16)
      [[ -d $JPEGS/train ]] || $PY bench/make_jpegs.py "$JPEGS" --classes 4 --per-class 100
      finch_cmd=("$FINCH" bench train --config bench/configs/resnet50_224_train.yaml
                 --set "data.root=$JPEGS" --set train.precision=bf16-mixed --steps 8 --warmup 2 --json)
      peers=("$PY bench/peer/imagefolder_train.py $JPEGS --steps 8 --warmup 2 --bf16-autocast"
             "$PY bench/peer/imagefolder_train.py $JPEGS --steps 8 --warmup 2 --channels-last --bf16-autocast") ;;
    *) echo "unknown case $c (fmnist | resnet50 | resnet50_bf16)" >&2; exit 2 ;;
  esac
  for r in $(seq 1 "$ROUNDS"); do
    record finch "$c" "$("${finch_cmd[@]}" 2>/dev/null)"
    for i in "${!peers[@]}"; do
      sides=(pytorch pytorch_cl pytorch_tuned); side=${sides[$i]}
      record "$side" "$c" "$(${peers[$i]})"
    done
  done
done
$PY - "$OUT" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
print("| case | finch img/s (median; runs) | PyTorch img/s (median; runs) | PyTorch channels_last img/s | PyTorch channels_last + finch's malloc settings img/s | ratio vs best peer | finch peak RSS MiB | load (1 min, median) |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for c in dict.fromkeys(r["case"] for r in runs):
    def side(s):
        v = [x["r"]["img_per_s"] for x in runs if x["case"] == c and x["side"] == s]
        return (statistics.median(v), v) if v else (None, [])
    f, p, q, t = side("finch"), side("pytorch"), side("pytorch_cl"), side("pytorch_tuned")
    best = max(x[0] for x in (p, q, t) if x[0] is not None)
    fmt = lambda m: "-" if m[0] is None else f"{m[0]:.1f} ({', '.join(f'{v:.1f}' for v in m[1])})"
    rss = statistics.median(x["r"]["peak_rss_mib"] for x in runs if x["case"] == c and x["side"] == "finch")
    load = statistics.median(x["r"]["load_avg_1min"] for x in runs if x["case"] == c)
    print(f"| {c} | {fmt(f)} | {fmt(p)} | {fmt(q)} | {fmt(t)} | **{f[0] / best:.2f}x** | {rss:.0f} | {load:.2f} |")
PY
