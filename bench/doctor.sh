#!/usr/bin/env bash
# `finch data doctor` benchmarks (issue 16; results in docs/data-doctor.md):
#  1. the model-free checks on Fashion-MNIST as shipped (IDX) and on a planted-problem copy
#     (bench/doctor/make_planted_fmnist.py): time, peak memory, precision / recall per detector;
#  2. label issues by confident learning from 4-fold cross-validated ResNet-20s (3 epochs each)
#     on planted copies with 5% and 10% symmetric and 10% class-pair label noise;
#  3. long-tailed Fashion-MNIST (imbalance 100): plain training vs balanced sampling vs
#     effective-number re-weighting vs logit adjustment, test top-1 (= mean per-class accuracy
#     on the balanced test split).
#
# usage: bench/doctor.sh [OUT=/tmp/finch-bench-doctor] [PARTS="1 2 3"]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/finch-bench-doctor}
PARTS=${2:-"1 2 3"}
FINCH=build/finch
PY=/usr/bin/python3
mkdir -p "$OUT"
echo "# $(date -u +%F) $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)"

timed() {  # LOG, then the command: wall time and peak RSS appended to LOG
  local log=$1; shift
  /usr/bin/time -f "wall %e s, peak RSS %M KB" -o "$log.time" "$@" > "$log" 2>&1
  cat "$log.time"
}

planted() {  # DIR, then generator options
  local dir=$1; shift
  [[ -f $dir/planted.csv ]] || $PY bench/doctor/make_planted_fmnist.py "$dir" "$@" > /dev/null
}

if [[ $PARTS == *1* ]]; then
  echo "## 1a. model-free checks, Fashion-MNIST as shipped (70,000 images)"
  timed "$OUT/shipped.log" $FINCH data doctor --dataset idx --root /usr/share/datasets/fashion-mnist \
    --out "$OUT/shipped" --progress none
  grep -E '^  [a-z_]+ +[0-9]+' "$OUT/shipped.log" || true
  echo "## 1b. model-free checks, planted copy (70,175 images, 25 of each problem)"
  planted "$OUT/planted"
  timed "$OUT/planted.log" $FINCH data doctor --dataset csv --root "$OUT/planted" \
    --set data.csv_file=data.csv --out "$OUT/planted-report" --progress none
  $PY bench/doctor/score.py "$OUT/planted/planted.csv" "$OUT/planted-report/flagged.csv" | sed -n '1,/^$/p'
  echo "## 1c. one real photograph and six altered copies"
  $PY bench/doctor/make_photo_copies.py "$OUT/photo"
  $FINCH data doctor --dataset imagefolder --root "$OUT/photo" --out "$OUT/photo-report" \
    --progress none --json | $PY -c 'import json,sys; [print(" ", f["path"], f["reason"], f["detail"]) for f in json.loads(sys.stdin.readlines()[-1])["flags"]]'
fi

# The fold models read 28 px PNGs, some of them resized copies: resize first.
CV_RECIPE=(--config configs/fashion_mnist.yaml --set train.epochs=3 --set train.progress=none
  --set 'data.train_transforms=[{type: resize, size: [28, 28]}, {type: pad_crop, padding: 2}, {type: hflip, p: 0.5}]')
if [[ $PARTS == *2* ]]; then
  for noise in "symmetric 0.05" "symmetric 0.10" "pair 0.10"; do
    set -- $noise
    name=noise-$1-$2
    echo "## 2. label issues, $1 noise $2 (4-fold cross-validation)"
    planted "$OUT/$name" --noise-kind "$1" --noise "$2"
    timed "$OUT/$name.log" $FINCH data doctor --dataset csv --root "$OUT/$name" \
      --set data.csv_file=data.csv "${CV_RECIPE[@]}" --cv 4 --out "$OUT/$name-report" --progress none
    $PY bench/doctor/score.py "$OUT/$name/planted.csv" "$OUT/$name-report/flagged.csv" | grep -E '^\| (detector|label_issue|near_dup|---)'
  done
fi

if [[ $PARTS == *3* ]]; then
  echo "## 3. long-tailed Fashion-MNIST (imbalance ratio 100)"
  [[ -f $OUT/lt/data.csv ]] || $PY bench/doctor/make_long_tail_fmnist.py "$OUT/lt" > /dev/null
  for variant in "plain" "balanced --set data.sampler=balanced" \
                 "reweighted --set train.class_weights=effective_number" \
                 "logit-adjusted --set train.logit_adjustment=1.0"; do
    set -- $variant
    name=$1; shift
    if [[ ! -f $OUT/lt-$name/best.safetensors ]]; then
      rm -rf "$OUT/lt-$name"
      $FINCH train --config configs/fashion_mnist_longtail.yaml --set data.root="$OUT/lt" \
        --set train.progress=none "$@" --out "$OUT/lt-$name" > "$OUT/lt-$name.log" 2>&1
    fi
    printf '%-15s ' "$name"
    $FINCH eval --model "$OUT/lt-$name/best.safetensors" --dataset csv --root "$OUT/lt" \
      --option csv_file=data.csv --split test --json |
      $PY -c 'import json,sys; j=json.loads(sys.stdin.readlines()[-1]); pc=sorted(c["recall"] for c in j["per_class"]); print("top-1 %.2f%%  mean per-class %.2f%%  worst class %.2f%%" % (100*j["top1"], 100*j["mean_class_accuracy"], 100*pc[0]))'
  done
fi
