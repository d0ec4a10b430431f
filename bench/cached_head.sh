#!/usr/bin/env bash
# Cached-feature head training vs full-network training, CUB-sized (issue 7, target 5):
#  1. writes 6,000 generated 64 x 64 JPEGs in 200 class folders (30 each) to IMAGES;
#  2. `finch train` on bench/configs/cached_head.yaml: frozen ResNet-50, its 2048-d embeddings
#     computed once (timed as "caching"), then a linear head trained on them for 5 epochs;
#     prints every epoch's training img/s and epoch seconds (training + validation, as
#     metrics.jsonl records them);
#  3. `finch bench train` of the full ResNet-50 (bench/configs/resnet50_224_train.yaml) at
#     224 and 448, batch 16, and the epoch time over 6,000 images that its img/s implies.
#
# usage: bench/cached_head.sh [IMAGES=/tmp/finch-bench-cub-sized] [JPEGS=/tmp/finch-bench-jpegs]
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGES=${1:-/tmp/finch-bench-cub-sized}
JPEGS=${2:-/tmp/finch-bench-jpegs}
FINCH=build/finch
PY=/usr/bin/python3
if [[ ! -d $IMAGES/train ]]; then
  $PY - "$IMAGES/train" <<'PY'
import os, random, sys
from PIL import Image, ImageDraw
random.seed(0)
for c in range(200):
    d = os.path.join(sys.argv[1], f"class{c:03d}")
    os.makedirs(d, exist_ok=True)
    for i in range(30):
        img = Image.new("RGB", (64, 64), tuple(random.randrange(256) for _ in range(3)))
        draw = ImageDraw.Draw(img)
        for _ in range(3):
            x, y = random.randrange(48), random.randrange(48)
            draw.ellipse([x, y, x + 16, y + 16], fill=tuple(random.randrange(256) for _ in range(3)))
        img.save(os.path.join(d, f"{i:02d}.jpg"), quality=90)
PY
fi
[[ -d $JPEGS/train ]] || $PY bench/make_jpegs.py "$JPEGS" --classes 4 --per-class 100
RUN=$(mktemp -d)
trap 'rm -rf "$RUN"' EXIT
start=$(date +%s.%N)
$FINCH train --config bench/configs/cached_head.yaml --out "$RUN/head" --set "data.root=$IMAGES" \
  2>"$RUN/head.log" >/dev/null
total=$($PY -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$start" "$(date +%s.%N)")
echo "cached head: whole run ${total} s (load $(cut -d' ' -f1 /proc/loadavg))"
$PY - "$RUN/head/metrics.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(f"  epoch {r['epoch']}: train {r['img_per_s']:.0f} img/s = {5400 / r['img_per_s']:.2f} s for 5,400 images; "
          f"epoch incl. validation {r['seconds']:.2f} s")
PY
for size in 224 448; do
  r=$($FINCH bench train --config bench/configs/resnet50_224_train.yaml --set "data.root=$JPEGS" \
        --set "data.train_transforms=[{type: random_resized_crop, size: $size}, {type: hflip}]" \
        --set model.input_size=$size --steps 3 --warmup 1 --json 2>/dev/null)
  $PY -c "
import json, sys
r = json.loads(sys.argv[1])
print(f\"full ResNet-50 at $size, batch 16: {r['img_per_s']:.2f} img/s -> {6000 / r['img_per_s'] / 60:.1f} min per 6,000-image epoch (load {r['load_avg_1min']:.2f})\")" "$r"
done
