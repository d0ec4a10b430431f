#!/usr/bin/env bash
# finch serve under load vs FastAPI + uvicorn + PyTorch (bench/peer/serve.py), same model
# (torchvision ResNet-50, random weights saved once), same 2 compute threads, same client
# (wrk, Debian), same JPEG: images/s, p50 / p99 latency at concurrency 1, 8 and 64, finch's
# mean batch size (from /metrics) and peak RSS; then finch bench infer at batch 16 for the
# "serving reaches 80% of plain inference" bar. Loopback only.
#
# usage: [CONCURRENCY="1 8 64"] [DTYPE=auto] bench/serve_load.sh [SECONDS=20] [WORK=/tmp/finch-bench-serve]
# DTYPE is finch's --dtype (auto: fp32 here, the model file records no bf16 check; bf16 where the
# CPU has AVX512_BF16 / AMX: what auto picks once a check is recorded, docs/model-files.md).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${1:-20}
WORK=${2:-/tmp/finch-bench-serve}
FINCH=$PWD/build/finch
PY=/usr/bin/python3
mkdir -p "$WORK"
echo "# $(date -u +%F) $(lscpu | sed -n 's/^Model name: *//p'), load $(cut -d' ' -f1 /proc/loadavg)"

if [[ ! -f $WORK/resnet50.safetensors ]]; then
  $PY - "$WORK/resnet50_tv.safetensors" <<'PY'
import sys, torch, torchvision
sys.path.insert(0, "scripts")
from pth_to_safetensors import save_safetensors
torch.manual_seed(0)
save_safetensors(torchvision.models.resnet50().state_dict(), sys.argv[1])
PY
  $FINCH import --arch resnet50 --weights "$WORK/resnet50_tv.safetensors" --out "$WORK/resnet50.safetensors" >/dev/null
  $PY -c "
from PIL import Image; import random
random.seed(0)
img = Image.new('RGB', (500, 375))
img.putdata([tuple(random.randrange(256) for _ in range(3)) for _ in range(500 * 375)])
img.save('$WORK/photo.jpg', quality=90)"
fi
cat > "$WORK/post.lua" <<LUA
local f = io.open("$WORK/photo.jpg", "rb")
wrk.method = "POST"
wrk.body = f:read("*all")
wrk.headers["Content-Type"] = "image/jpeg"
f:close()
LUA

wait_port() { for _ in $(seq 1 300); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; return 1; }
load() {  # PORT CONCURRENCY -> "img/s p50_ms p99_ms"
  local out
  out=$(wrk -t $(( $2 < 2 ? 1 : 2 )) -c "$2" -d "${SECONDS_PER_RUN}s" --timeout 60s --latency \
          -s "$WORK/post.lua" "http://127.0.0.1:$1/v1/predict")
  $PY - "$out" <<'PY'
import re, sys
t = sys.argv[1]
def ms(label):
    m = re.search(rf"\s{label}%\s+([\d.]+)(us|ms|s)", t)
    v, u = float(m.group(1)), m.group(2)
    return v / 1000 if u == "us" else v * 1000 if u == "s" else v
rate = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
print(f"{rate:.2f} {ms(50):.1f} {ms(99):.1f} {errors.group(1) if errors else 0}")
PY
}
peak_rss() { grep VmHWM /proc/$1/status | awk '{printf "%.0f", $2 / 1024}'; }

for c in ${CONCURRENCY:-1 8 64}; do
  $FINCH serve --model "$WORK/resnet50.safetensors" --port 18080 --threads 2 --max-batch 16 \
    --dtype "${DTYPE:-auto}" \
    --http-threads 64 --queue 1024 > "$WORK/finch_serve.log" 2>&1 &
  fpid=$!
  wait_port 18080
  read -r rate p50 p99 bad < <(load 18080 $c)
  batch=$($PY -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:18080/metrics').read().decode())" | awk '/^finch_batch_size_sum/{s=$2} /^finch_batch_size_count/{n=$2} END{printf "%.2f", s/n}')
  echo "| finch serve (${DTYPE:-auto}) | $c | $rate | $p50 | $p99 | $batch | $(peak_rss $fpid) | $bad |"
  kill -TERM $fpid; wait $fpid || true
  $PY bench/peer/serve.py --weights "$WORK/resnet50_tv.safetensors" --port 18081 --threads 2 \
    > "$WORK/peer_serve.log" 2>&1 &
  ppid=$!
  wait_port 18081
  read -r rate p50 p99 bad < <(load 18081 $c)
  echo "| FastAPI + PyTorch | $c | $rate | $p50 | $p99 | 1 | $(peak_rss $ppid) | $bad |"
  kill -TERM $ppid; wait $ppid || true
done
$FINCH bench infer --model "$WORK/resnet50.safetensors" --batch 16 --size 224 --threads 2 --iters 10 --warmup 2 \
  --dtype "$([[ ${DTYPE:-auto} == bf16 ]] && echo bf16 || echo fp32)"
