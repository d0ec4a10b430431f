#!/usr/bin/env bash
# Open-world benchmarks on Fashion-MNIST (issue 12; results in docs/retrieval.md):
#  1. class-disjoint: a ResNet-20 trained on classes 0-4 with each loss (cross-entropy,
#     batch-hard triplet, multi-similarity, CosFace on the cosine head); Recall@K, MAP@R and
#     5-way 1-/5-shot accuracy (600 episodes, 15 queries) on the test images of classes 5-9;
#  2. new classes without retraining: a model trained on classes 0-6, galleries of K = 1, 5,
#     20 train images per class of classes 7-9 (plus 20 of each known class), accuracy of the
#     gallery classification of the test images of 7-9;
#  3. search latency and memory at 10k / 100k / 1M items (exact vs FAISS), embed img/s.
#
# usage: bench/retrieval.sh [OUT=/tmp/finch-bench-retrieval] [EPOCHS=4] [PARTS="1 2 3"]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/finch-bench-retrieval}
EPOCHS=${2:-4}
PARTS=${3:-"1 2 3"}
FINCH=build/finch
ROOT=/usr/share/datasets/fashion-mnist
mkdir -p "$OUT"
echo "# $(date -u +%F) $(lscpu | sed -n 's/^Model name: *//p'), load $(cut -d' ' -f1 /proc/loadavg)"

train() {  # NAME, then --set overrides
  local name=$1; shift
  if [[ ! -f $OUT/$name/best.safetensors ]]; then
    rm -rf "$OUT/$name"
    local start=$SECONDS
    $FINCH train --config configs/fashion_mnist_retrieval.yaml --out "$OUT/$name" \
      --set train.epochs=$EPOCHS --set train.progress=none "$@" > "$OUT/$name.log" 2>&1
    echo "$name: trained in $((SECONDS - start)) s"
  fi
}

# --- 1. class-disjoint retrieval and few-shot -------------------------------------------------
if [[ $PARTS == *1* ]]; then
PK=(--set data.sampler=pk --set data.samples_per_class=32)
train ce
train triplet "${PK[@]}" --set 'train.losses=[{type: cross_entropy}, {type: triplet, margin: 0.3}]'
train multi_similarity "${PK[@]}" --set 'train.losses=[{type: multi_similarity}]'
train cosface --set model.head=cosine --set model.cosine_scale=16 \
  --set 'train.losses=[{type: cosface, margin: 0.35}]'
for name in ce triplet multi_similarity cosface; do
  r=$($FINCH eval --json --protocol retrieval --model "$OUT/$name/best.safetensors" \
        --dataset idx --root $ROOT --split test --option 'class_range=[5,10]')
  f=$($FINCH eval --json --protocol fewshot --ways 5 --shots 1,5 --queries 15 --episodes 600 \
        --model "$OUT/$name/best.safetensors" --dataset idx --root $ROOT --split test \
        --option 'class_range=[5,10]')
  /usr/bin/python3 - "$name" "$r" "$f" <<'PY'
import json, sys
name, r, f = sys.argv[1], json.loads(sys.argv[2])["retrieval"], json.loads(sys.argv[3])["fewshot"]
shots = {x["shots"]: x for x in f["results"]}
print(f"| {name} | {100*r['recall_at_k']['1']:.2f} | {100*r['recall_at_k']['2']:.2f} | "
      f"{100*r['recall_at_k']['4']:.2f} | {100*r['recall_at_k']['8']:.2f} | {100*r['map_at_r']:.2f} | "
      f"{100*r['r_precision']:.2f} | {100*shots[1]['accuracy']:.2f} +- {100*shots[1]['ci95']:.2f} | "
      f"{100*shots[5]['accuracy']:.2f} +- {100*shots[5]['ci95']:.2f} |")
PY
done

fi

# --- 2. new classes from K images each, no retraining --------------------------------------
if [[ $PARTS == *2* ]]; then
train seven --set 'data.class_range=[0,7]'
M=$OUT/seven/best.safetensors
for k in 1 5 20; do
  G=$OUT/gallery_k$k.safetensors
  $FINCH gallery build --json --model "$M" --dataset idx --root $ROOT --split train \
    --option 'class_range=[0,7]' --per-class 20 --seed 1 --out "$G" > /dev/null
  $FINCH gallery add "$G" --json --model "$M" --dataset idx --root $ROOT --split train \
    --option 'class_range=[7,10]' --per-class $k --seed 1 > /dev/null
  for rule in 0 3; do
    [[ $k -lt 3 && $rule -gt 0 ]] && continue
    $FINCH eval --json --protocol gallery --gallery "$G" --knn $rule --model "$M" --dataset idx \
      --root $ROOT --split test --option 'class_range=[7,10]' |
      /usr/bin/python3 -c "import json,sys; g=json.load(sys.stdin)['gallery']; print(f\"| K = $k | {g['rule']} | {100*g['top1']:.2f} | {100*g['mean_class_accuracy']:.2f} | {g['items']} |\")"
  done
done

fi

# --- 3. search latency, embed throughput ------------------------------------------------------
if [[ $PARTS == *3* ]]; then
# (Debian's FAISS builds HNSW slowly on 2 cores, so HNSW is measured at 20k items.)
# Batches of 64 queries (exact search reads the gallery once per batch), and single queries
# (it reads all of it per query; where an index earns its keep).
for spec in "10000 2048 exact 64" "100000 2048 exact 64" "100000 2048 ivf 64" "100000 2048 ivf 1" \
            "20000 512 hnsw 64" "20000 512 hnsw 1" "1000000 512 exact 64" "1000000 512 ivf 64" \
            "1000000 512 ivf 1"; do
  set -- $spec
  $FINCH bench search --items $1 --dim $2 --index $3 --queries $4 --k 10 --rounds 5
done
start=$(date +%s%N)
$FINCH embed --model "$OUT/ce/best.safetensors" --dataset idx --root $ROOT --split test \
  --out "$OUT/test_embeddings.safetensors"
ms=$(( ($(date +%s%N) - start) / 1000000 ))
echo "embed: 10000 images (ResNet-20, 28 px) in $ms ms, whole command: $(( 10000000 / ms )) img/s"
fi
