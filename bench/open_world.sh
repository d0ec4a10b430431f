#!/usr/bin/env bash
# Open-world part 2 benchmarks on Fashion-MNIST (issue 13; results in docs/open-world.md):
#  1. open-set: a ResNet-20 trained on classes 0-5, the test images of classes 6-9 as the
#     unknowns: AUROC / FPR@95%TPR / OSCR of each score, thresholds calibrated on the
#     validation carve, the accuracy-vs-rejected plot;
#  2. zero-shot: a ResNet-20 trained on 7 classes, Pullover, Dress and Sneaker recognised from
#     configs/attributes/fashion_mnist.csv (ESZSL and softmax);
#  1b. open-set on the generated parts data (bench/localization/make_parts_dataset.py): the
#     plain ResNet-20 of parts.yaml trained on three glyphs, the fourth (checker) unknown;
#  3. hierarchy: Fashion-MNIST written in the Aircraft layout with variant / family /
#     manufacturer (bench/make_aircraft_fmnist.py), accuracy at the three levels.
#
# usage: bench/open_world.sh [OUT=/tmp/finch-bench-open-world] [EPOCHS=4]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/finch-bench-open-world}
EPOCHS=${2:-4}
FINCH=build/finch
ROOT=/usr/share/datasets/fashion-mnist
mkdir -p "$OUT"
echo "# $(date -u +%F) $(lscpu | sed -n 's/^Model name: *//p'), load $(cut -d' ' -f1 /proc/loadavg)"

train() {  # NAME RECIPE, then --set overrides
  local name=$1 recipe=$2; shift 2
  if [[ ! -f $OUT/$name/best.safetensors ]]; then
    rm -rf "$OUT/$name"
    $FINCH train --config "$recipe" --out "$OUT/$name" --set train.epochs=$EPOCHS \
      --set train.progress=none "$@" > "$OUT/$name.log" 2>&1
  fi
}

echo "## 1. open-set: known classes 0-5, unknown 6-9"
train openset6 configs/fashion_mnist_retrieval.yaml --set 'data.class_range=[0,6]'
$FINCH eval --open-set --model "$OUT/openset6/best.safetensors" --dataset idx --root $ROOT \
  --split test --unknown-classes 6:10 --calibrate-tpr 0.95 \
  --calibrated-out "$OUT/openset6/calibrated.safetensors" --export-scores "$OUT/scores.csv" \
  --rejection-plot "$OUT/rejection.png" 2>&1 | grep -v '^embed'

echo "## 1b. open-set on the generated parts data: known cross, ring, diagonal; unknown checker"
PARTS=$OUT/parts-data
[[ -f $PARTS/parts.csv ]] || /usr/bin/python3 bench/localization/make_parts_dataset.py "$PARTS" \
  --train 800 --test 200 > /dev/null
train parts3 bench/localization/parts.yaml --set data.root="$PARTS" \
  --set 'data.classes=[cross, ring, diagonal]' --set train.epochs=12
$FINCH eval --open-set --model "$OUT/parts3/best.safetensors" --dataset csv --root "$PARTS" \
  --option csv_file=parts.csv --split test --unknown-classes checker --calibrate-tpr 0.95 \
  --rejection-plot "$OUT/parts_rejection.png" 2>&1 | grep -v '^embed'

echo "## 2. zero-shot: unseen Pullover, Dress, Sneaker"
train zsl7 configs/fashion_mnist_retrieval.yaml --set 'data.class_range=[]' \
  --set 'data.classes=[T-shirt/top, Trouser, Coat, Sandal, Shirt, Bag, Ankle boot]'
for method in eszsl softmax; do
  $FINCH eval --protocol zeroshot --zeroshot-method $method --model "$OUT/zsl7/best.safetensors" \
    --dataset idx --root $ROOT --split test --attributes configs/attributes/fashion_mnist.csv \
    --unseen-classes Pullover,Dress,Sneaker 2>&1 | grep -v '^embed'
done

echo "## 3. hierarchy: Aircraft-layout Fashion-MNIST"
[[ -f $OUT/aircraft-fm/data/variants.txt ]] || /usr/bin/python3 bench/make_aircraft_fmnist.py "$OUT/aircraft-fm"
train aircraft configs/fashion_mnist.yaml --set data.format=aircraft \
  --set data.root="$OUT/aircraft-fm/data" --set data.crop_banner=false
$FINCH eval --model "$OUT/aircraft/best.safetensors" --dataset aircraft \
  --root "$OUT/aircraft-fm/data" --option crop_banner=false --split test 2>&1 |
  sed -n '/^hierarchy/,/^$/p'
$FINCH report "$OUT/aircraft" --dataset aircraft --root "$OUT/aircraft-fm/data" \
  --option crop_banner=false --out "$OUT/aircraft_report.html" > /dev/null 2>&1 &&
  echo "report with the confusion matrix grouped by family: $OUT/aircraft_report.html"
