#!/usr/bin/env bash
# Bad input, tried per command as a careless or hostile user would: prints a Markdown table of
# each case, finch's exit code and the first line of its message (docs/reliability.md holds
# the last run). Every case must end with a clear error (exit 1, or 2 for a usage error) or
# an error record, never a crash (exit >= 128), a hang (a 60 s timeout, exit 124) or success.
#
#   bench/bad_inputs.sh            (from the repository root, after the build)
set -uo pipefail

FINCH=${FINCH:-build/finch}
ROOT=${FMNIST_ROOT:-/usr/share/datasets/fashion-mnist}
W=${TMPDIR:-/tmp}/finch-bad-inputs
[ -x "$FINCH" ] || { echo "bad_inputs.sh: $FINCH not built (ninja -C build)" >&2; exit 2; }
rm -rf "$W"
mkdir -p "$W"

# A small real model to aim the bad inputs at.
"$FINCH" train --config configs/fashion_mnist.yaml --out "$W/run" --set data.root="$ROOT" \
  --set train.epochs=1 --set train.max_steps_per_epoch=5 --set train.progress=none \
  > "$W/train.log" 2>&1 || { echo "training the probe model failed" >&2; exit 1; }
M="$W/run/best.safetensors"

# Inputs.
printf 'not an image' > "$W/text.jpg"
: > "$W/empty.png"
head -c 3000 /dev/urandom > "$W/noise.png"
/usr/bin/python3 - "$W" << 'EOF'
import struct, sys, zlib
w = sys.argv[1]
def png(path, width, height, rows):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows) + chunk(b"IEND", b""))
# 30000 x 30000 grey zeros compress to under 1 MB: a decompression bomb.
z = zlib.compressobj(9)
row = b"\x00" * 30001
data = b"".join(z.compress(row) for _ in range(30000)) + z.flush()
png(w + "/bomb.png", 30000, 30000, data)
# A valid header whose pixel data stops half-way.
good = zlib.compress(b"".join(b"\x00" + bytes(64) for _ in range(64)))
png(w + "/truncated.png", 64, 64, good[: len(good) // 2])
EOF
head -c 1000 "$M" > "$W/truncated.safetensors"
head -c 4096 /dev/urandom > "$W/random.safetensors"
printf 'data: {format: idx\n  root: [unclosed\n' > "$W/bad.yaml"
printf 'data:\n  format: nosuchformat\n' > "$W/unknown_format.yaml"
mkdir -p "$W/csvroot"
printf 'path,label\nnot_there.png,a\nmissing_label_column\n' > "$W/csvroot/train.csv"
mkdir -p "$W/#weird"

echo "| command | bad input | exit | message |"
echo "| --- | --- | --- | --- |"
try() {  # try COMMAND "WHAT" ARGS...
  local cmd=$1 what=$2
  shift 2
  local out rc
  out=$(timeout 60 "$FINCH" "$cmd" "$@" 2>&1 < /dev/null)
  rc=$?
  local msg
  # The first line that is not progress or the run's banner, and not libpng's own stderr.
  msg=$(printf '%s\n' "$out" | grep -m1 -vE '^(finch [0-9]|resuming|epoch |libpng|  |$)')
  msg=${msg//$W/W}
  msg=${msg//|/\\|}
  [ ${#msg} -gt 220 ] && msg="${msg:0:217}..."
  echo "| $cmd | $what | $rc | ${msg} |"
}

try train "config file missing" --config "$W/none.yaml" --out "$W/r1"
try train "YAML syntax error" --config "$W/bad.yaml" --out "$W/r2"
try train "unknown dataset format" --config "$W/unknown_format.yaml" --out "$W/r3"
try train "data root missing" --config configs/fashion_mnist.yaml --out "$W/r4" --set data.root=/nonexistent
try train "batch size 0" --config configs/fashion_mnist.yaml --out "$W/r5" --set train.batch_size=0
try train "epochs 0" --config configs/fashion_mnist.yaml --out "$W/r6" --set train.epochs=0
try train "learning rate a string" --config configs/fashion_mnist.yaml --out "$W/r7" --set optim.lr=fast
try train "unknown key in --set" --config configs/fashion_mnist.yaml --out "$W/r8" --set train.epochz=3
try train "--out already holds a run" --config configs/fashion_mnist.yaml --out "$W/run"
try train "--resume of a missing folder" --resume "$W/nowhere"
try train "CSV manifest with a bad line" --config configs/fashion_mnist.yaml --out "$W/r9" --set data.format=csv --set data.root="$W/csvroot"
try predict "model file missing" --model "$W/none.safetensors" "$W/text.jpg"
try predict "model file truncated" --model "$W/truncated.safetensors" "$W/text.jpg"
try predict "model file random bytes" --model "$W/random.safetensors" "$W/text.jpg"
try predict "image missing" --model "$M" --json "$W/none.png"
try predict "text file named .jpg" --model "$M" --json "$W/text.jpg"
try predict "zero-byte image" --model "$M" --json "$W/empty.png"
try predict "random bytes .png" --model "$M" --json "$W/noise.png"
try predict "truncated PNG" --model "$M" --json "$W/truncated.png"
try predict "30000 x 30000 PNG bomb (1 MB)" --model "$M" --json "$W/bomb.png"
try predict "--batch-size 0" --model "$M" --batch-size 0 "$W/text.jpg"
try predict "--topk 0" --model "$M" --topk 0 "$W/text.jpg"
try predict "--reject with an unknown score" --model "$M" --reject nosuch:0.5 "$W/text.jpg"
try predict "--reject knn without a gallery" --model "$M" --reject knn:0.5 "$W/text.jpg"
try eval "dataset root missing" --model "$M" --dataset idx --root /nonexistent
try eval "unknown dataset format" --model "$M" --dataset nosuch --root "$ROOT"
try eval "unknown split" --model "$M" --dataset idx --root "$ROOT" --split validation
try eval "--open-set with an unknown class name" --model "$M" --dataset idx --root "$ROOT" --open-set --unknown-classes Nosuch
try data "root named '#weird' (a string, not YAML)" info --dataset imagefolder --root "$W/#weird"
try data "root missing" info --dataset cub --root /nonexistent
try explain "image missing" --model "$M" --out "$W/x" "$W/none.png"
try serve "port out of range" --model "$M" --port 70000
try serve "public host without a token" --model "$M" --host 0.0.0.0 --port 0
try import "weights not a PyTorch file" --arch resnet18 --weights "$W/random.safetensors" --out "$W/imported.safetensors"
try import "weights of another architecture" --arch resnet50 --weights "$M" --out "$W/imported.safetensors"
