#!/usr/bin/env bash
# Fine-grained methods side by side on Fashion-MNIST: every method with the same backbone
# (ResNet-20, width 16), optimizer, schedule, batch and epoch budget (configs/fashion_mnist.yaml
# with train.epochs=EPOCHS), on the whole dataset and on its fine-grained part (T-shirt/top,
# Pullover, Coat, Shirt: the classes people confuse). Model selection on the carved validation
# split; the test split is evaluated once per run. Prints one TSV row per run and appends
# them to OUT/results.tsv. A method may carry its own peak lr as METHOD:LR (e.g. wsdan:0.01;
# choose it by val_acc, never test), and SEEDS runs every method once per seed. A run whose
# folder already holds an evaluated model is reported again, not retrained.
#
# usage: [THREADS=2] [SEEDS=0] bench/methods.sh [OUT=runs/methods] [EPOCHS=3] [PARTS="fine all"] [METHODS="..."]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/methods}
EPOCHS=${2:-3}
PARTS=${3:-"fine all"}
METHODS=${4:-"linear se cbam self_attention bilinear compact_bilinear wsdan centre triplet"}
THREADS=${THREADS:-2}
SEEDS=${SEEDS:-0}
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

[ -f "$OUT/results.tsv" ] ||
  printf "part\tmethod\tlr\tseed\tparams_M\ttrain_img_per_s\tval_acc\ttest_top1\ttest_mean_class\tminutes\n" > "$OUT/results.tsv"
for part in $PARTS; do
  for seed in $SEEDS; do
  for spec in $METHODS; do
    method=${spec%%:*}; lr=0.2; [[ $spec == *:* ]] && lr=${spec#*:}
    run="$OUT/$part-$method"
    [[ $lr != 0.2 ]] && run="$run-lr$lr"
    [[ $seed != 0 ]] && run="$run-seed$seed"
    part_args=(); eval_args=()
    # pk batches of 128: 16 samples of 8 classes (10 classes) or 32 of 4 (the fine part).
    k=16
    if [ "$part" = fine ]; then part_args=(--set "data.classes=$FINE"); eval_args=(--option "classes=$FINE"); k=32; fi
    start=$(date +%s)
    method_args "$method"
    if [ ! -s "$run.eval.json" ]; then
      rm -rf "$run"
      "$FINCH" train --config configs/fashion_mnist.yaml --out "$run" --set train.epochs="$EPOCHS" \
        --set threads="$THREADS" --set train.progress=lines --set data.samples_per_class=$k \
        --set optim.lr="$lr" --set seed="$seed" "${part_args[@]}" "${ARGS[@]}" \
        > "$run.log" 2>&1 || { echo "$part $spec seed $seed: training failed, see $run.log" >&2; continue; }
      "$FINCH" eval --model "$run/best.safetensors" --dataset idx --root /usr/share/datasets/fashion-mnist \
        --json "${eval_args[@]}" > "$run.eval.json" 2>/dev/null
    fi
    minutes=$(( ($(date +%s) - start) / 60 ))
    /usr/bin/python3 - "$run" "$part" "$method" "$lr" "$seed" "$minutes" <<'PY' | tee -a "$OUT/results.tsv"
import json, sys
run, part, method, lr, seed, minutes = sys.argv[1:7]
records = [json.loads(l) for l in open(run + "/metrics.jsonl") if l.strip()]
ev = json.load(open(run + ".eval.json"))
log = open(run + ".log").read()
params = log.split(" M parameters")[0].rsplit("(", 1)[1]
img_s = sum(r["img_per_s"] for r in records) / len(records)
best_val = max(r["val_acc"] for r in records)
print(f"{part}\t{method}\t{lr}\t{seed}\t{params}\t{img_s:.0f}\t{100*best_val:.2f}\t{100*ev['top1']:.2f}\t"
      f"{100*ev['mean_class_accuracy']:.2f}\t{minutes}")
PY
    done
  done
done
