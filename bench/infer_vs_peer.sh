#!/usr/bin/env bash
# Inference throughput, finch vs the PyTorch peer: ResNet-50 (random weights, 1000
# classes), 2 threads, for each (size, batch) in 224x1 224x8 448x1 448x8. Runs finch
# (`finch bench infer`, optimised copy: BN folded, channels-last, inference mode), PyTorch
# NCHW, PyTorch channels_last, and PyTorch channels_last with finch's allocator settings
# (glibc MALLOC_MMAP_THRESHOLD_/MMAP_MAX_/TRIM_THRESHOLD_, the env-var form of the mallopt calls
# in apps/finch/main.cpp) alternately (A B C D A B C D ...) so machine noise hits all alike;
# and ONNX Runtime (bench/peer/ort_infer.js: onnxruntime-node on torchvision's ResNet-50
# exported by torch.onnx.export, graph optimisations on, 2 intra-op threads; fp32 only)
# prints every run with the 1-minute load average, then medians and ratios against PyTorch
# as shipped (best of NCHW and channels_last), against the allocator-tuned run and against
# ONNX Runtime, with the CPU model and its ISA flags. The roofline columns divide each side's
# GFLOP/s (finch's count of multiply-adds per image x 2 x img/s) by the machine's peak from
# `finch bench peak` (a multiply-add loop in fp32, or AVX512_BF16 dot products for bf16; none
# for int8, where finch and PyTorch run calibrated int8 copies and ONNX Runtime fp32).
#
# usage: bench/infer_vs_peer.sh [ROUNDS=3] [ITERS=10] [CASES="224x1 224x8 448x1 448x8"] [DTYPE=fp32|bf16|int8]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
ITERS=${2:-10}
CASES=${3:-"224x1 224x8 448x1 448x8"}
DTYPE=${4:-fp32}
FINCH=build/finch
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
ORT_MODEL=${ORT_MODEL:-/tmp/finch-bench-resnet50.onnx}
[[ -f $ORT_MODEL ]] || /usr/bin/python3 bench/peer/export_resnet50_onnx.py "$ORT_MODEL"
bash scripts/install-npm.sh build/npm >/dev/null
peer_dtype=""; [[ $DTYPE == bf16 ]] && peer_dtype="--bf16"; [[ $DTYPE == int8 ]] && peer_dtype="--int8"
PEAK=$("$FINCH" bench peak --threads 2 --json)
echo "peak: $PEAK"

for c in $CASES; do
  size=${c%x*}; batch=${c#*x}
  for r in $(seq 1 "$ROUNDS"); do
    f=$("$FINCH" bench infer --model resnet50 --batch "$batch" --size "$size" --threads 2 \
          --dtype "$DTYPE" --iters "$ITERS" --warmup 2 --json)
    echo "{\"side\": \"finch\", \"case\": \"$c\", \"r\": $f}" >>"$OUT"
    p=$(/usr/bin/python3 bench/peer/infer.py --batch "$batch" --size "$size" --threads 2 \
          --iters "$ITERS" --warmup 2 $peer_dtype)
    echo "{\"side\": \"pytorch\", \"case\": \"$c\", \"r\": $p}" >>"$OUT"
    q=$(/usr/bin/python3 bench/peer/infer.py --batch "$batch" --size "$size" --threads 2 \
          --iters "$ITERS" --warmup 2 --channels-last $peer_dtype)
    echo "{\"side\": \"pytorch_cl\", \"case\": \"$c\", \"r\": $q}" >>"$OUT"
    t=$(MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1073741824 \
          /usr/bin/python3 bench/peer/infer.py --batch "$batch" --size "$size" --threads 2 \
          --iters "$ITERS" --warmup 2 --channels-last $peer_dtype)
    echo "{\"side\": \"pytorch_tuned\", \"case\": \"$c\", \"r\": $t}" >>"$OUT"
    o=$(NODE_PATH=build/npm/node_modules node bench/peer/ort_infer.js "$ORT_MODEL" --batch "$batch" \
          --size "$size" --threads 2 --iters "$ITERS" --warmup 2)
    echo "{\"side\": \"ort\", \"case\": \"$c\", \"r\": $o}" >>"$OUT"
    /usr/bin/python3 -c "
import json,sys
rs=[json.loads(l) for l in open(sys.argv[1])][-5:]
print(' '.join(f\"{x['side']} {x['r']['img_per_s']:.2f} img/s (p50 {x['r']['latency_ms']['p50']:.0f} ms, load {x['r']['load_avg_1min']:.2f})\" for x in rs), '[$c round $r]')" "$OUT"
  done
done
/usr/bin/python3 - "$OUT" "$PEAK" "$DTYPE" <<'PY'
import json, math, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
peak = json.loads(sys.argv[2])
# int8 has no peak of its own here (the loop measures fp32 / bf16 multiply-adds): no roofline.
peak_gflops = float("nan") if sys.argv[3] == "int8" else (
    peak["fma_gflops_bf16" if sys.argv[3] == "bf16" else "fma_gflops_fp32"] or float("nan"))
gemm_gflops = peak["gemm_gflops_bf16" if sys.argv[3] == "bf16" else "gemm_gflops_fp32"]
cases = list(dict.fromkeys(r["case"] for r in runs))
cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
flags = next(l.split(":", 1)[1].split() for l in open("/proc/cpuinfo") if l.startswith("flags"))
isa = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
if sys.argv[3] == "int8":
    print(f"CPU: {cpu}; ISA: {' '.join(isa)}; finch and PyTorch (FX, oneDNN) in int8, ONNX Runtime in fp32; no int8 peak measured (GFLOP/s counts the fp32 model's multiply-adds)")
else:
    print(f"CPU: {cpu}; ISA: {' '.join(isa)}; {sys.argv[3]} peak {peak_gflops:.0f} GFLOP/s (multiply-add loop, 2 threads), LibTorch GEMM {gemm_gflops:.0f} GFLOP/s")
print("| size x batch | finch img/s | p50 / p90 / p99 ms | GFLOP/s | peak RSS MiB | PyTorch NCHW img/s | PyTorch channels_last img/s | ratio vs PyTorch as shipped | PyTorch channels_last + finch's malloc settings img/s | ratio vs that | ONNX Runtime img/s | ratio vs ONNX Runtime | finch / ONNX Runtime % of peak | load (1 min, median) |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for c in cases:
    def med(side, key=lambda r: r["img_per_s"]):
        return statistics.median(key(x["r"]) for x in runs if x["case"] == c and x["side"] == side)
    f, p, q, t, o = med("finch"), med("pytorch"), med("pytorch_cl"), med("pytorch_tuned"), med("ort")
    lat = [med("finch", lambda r, k=k: r["latency_ms"][k]) for k in ("p50", "p90", "p99")]
    gf = med("finch", lambda r: r["gflop_per_s"])
    rss = med("finch", lambda r: r["peak_rss_mib"])
    load = statistics.median(x["r"]["load_avg_1min"] for x in runs if x["case"] == c)
    gflop_per_image = gf / f
    roof = "-" if math.isnan(peak_gflops) else \
        f"{100 * gf / peak_gflops:.0f}% / {100 * o * gflop_per_image / peak_gflops:.0f}%"
    print(f"| {c} | {f:.2f} | {lat[0]:.0f} / {lat[1]:.0f} / {lat[2]:.0f} | {gf:.0f} | {rss:.0f} | {p:.2f} | {q:.2f} | **{f / max(p, q):.2f}x** | {t:.2f} | **{f / t:.2f}x** | {o:.2f} | **{f / o:.2f}x** | {roof} | {load:.2f} |")
PY
