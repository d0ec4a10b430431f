#!/usr/bin/env bash
# Fine-grained methods side by side on Fashion-MNIST: every method with the same backbone
# (ResNet-20, width 16), optimizer, schedule, batch and epoch budget (configs/fashion_mnist.yaml
# with train.epochs=EPOCHS), on the whole dataset and on its fine-grained part (T-shirt/top,
# Pullover, Coat, Shirt: the classes people confuse). Model selection on the carved validation
# split; the test split is evaluated once per run. Prints one TSV row per run and writes them
# to OUT/results.tsv.
#
# usage: [THREADS=2] bench/methods.sh [OUT=runs/methods] [EPOCHS=3] [PARTS="fine all"] [METHODS="..."]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/methods}
EPOCHS=${2:-3}
PARTS=${3:-"fine all"}
METHODS=${4:-"linear se cbam self_attention bilinear compact_bilinear wsdan centre triplet"}
THREADS=${THREADS:-2}
FINCH=build/finch
FINE='[T-shirt/top, Pullover, Coat, Shirt]'
mkdir -p "$OUT"

# Each method's overrides of configs/fashion_mnist.yaml (docs/methods.md explains the choices),
# into the array ARGS.
method_args() {
  case "$1" in
    linear) ARGS=() ;;
    se) ARGS=(--set model.attention.type=se --set "model.attention.stages=[2, 3]" --set model.attention.reduction=4) ;;
    cbam) ARGS=(--set model.attention.type=cbam --set "model.attention.stages=[2, 3]" --set model.attention.reduction=4) ;;
    self_attention) ARGS=(--set model.head=self_attention --set model.self_attention.dim=64 --set model.self_attention.heads=4) ;;
    bilinear) ARGS=(--set model.head=bilinear) ;;
    compact_bilinear) ARGS=(--set model.head=bilinear --set model.bilinear.type=compact --set model.bilinear.dim=2048) ;;
    wsdan) ARGS=(--set model.head=wsdan --set model.wsdan.parts=8 --set "train.losses=[{type: cross_entropy}, {type: centre, weight: 1.0}]") ;;
    centre) ARGS=(--set "train.losses=[{type: cross_entropy}, {type: centre, weight: 0.01}]") ;;
    triplet) ARGS=(--set "train.losses=[{type: cross_entropy}, {type: triplet, margin: 0.3}]" --set data.sampler=pk) ;;
    *) echo "unknown method $1" >&2; exit 2 ;;
  esac
}

printf "part\tmethod\tparams_M\ttrain_img_per_s\tval_acc\ttest_top1\ttest_mean_class\tminutes\n" | tee "$OUT/results.tsv"
for part in $PARTS; do
  for method in $METHODS; do
    run="$OUT/$part-$method"
    part_args=(); eval_args=()
    # pk batches of 128: 16 samples of 8 classes (10 classes) or 32 of 4 (the fine part).
    k=16
    if [ "$part" = fine ]; then part_args=(--set "data.classes=$FINE"); eval_args=(--option "classes=$FINE"); k=32; fi
    start=$(date +%s)
    method_args "$method"
    "$FINCH" train --config configs/fashion_mnist.yaml --out "$run" --set train.epochs="$EPOCHS" \
      --set threads="$THREADS" --set train.progress=lines --set data.samples_per_class=$k \
      "${part_args[@]}" "${ARGS[@]}" \
      > "$run.log" 2>&1 || { echo "$part $method: training failed, see $run.log" >&2; continue; }
    minutes=$(( ($(date +%s) - start) / 60 ))
    "$FINCH" eval --model "$run/best.safetensors" --dataset idx --root /usr/share/datasets/fashion-mnist \
      --json "${eval_args[@]}" > "$run.eval.json" 2>/dev/null
    /usr/bin/python3 - "$run" "$part" "$method" "$minutes" <<'PY' | tee -a "$OUT/results.tsv"
import json, sys
run, part, method, minutes = sys.argv[1:5]
records = [json.loads(l) for l in open(run + "/metrics.jsonl") if l.strip()]
ev = json.load(open(run + ".eval.json"))
log = open(run + ".log").read()
params = log.split(" M parameters")[0].rsplit("(", 1)[1]
img_s = sum(r["img_per_s"] for r in records) / len(records)
best_val = max(r["val_acc"] for r in records)
print(f"{part}\t{method}\t{params}\t{img_s:.0f}\t{100*best_val:.2f}\t{100*ev['top1']:.2f}\t"
      f"{100*ev['mean_class_accuracy']:.2f}\t{minutes}")
PY
  done
done
