#!/usr/bin/env bash
# `make demo`: train the shipped Fashion-MNIST recipe on this machine's CPU, evaluate the
# best (validation-selected) model on the untouched test split, print the summary, and write
# the run's self-contained HTML report (curves, eval, Grad-CAM, t-SNE; docs/explain.md), and
# check the data set itself with the data doctor (leaks, duplicates, odd images: a few seconds).
set -euo pipefail
cd "$(dirname "$0")/.."

FINCH=build/finch
RECIPE=${RECIPE:-configs/fashion_mnist.yaml}
RUN_DIR=${RUN_DIR:-runs/fashion-mnist-$(date +%Y%m%d-%H%M%S)}
DATA=/usr/share/datasets/fashion-mnist

echo "== finch demo: $RECIPE -> $RUN_DIR"
"$FINCH" train --config "$RECIPE" --out "$RUN_DIR" "$@"

echo "== evaluating $RUN_DIR/best.safetensors on the Fashion-MNIST test split"
"$FINCH" eval --model "$RUN_DIR/best.safetensors" --dataset idx --root "$DATA" --split test \
  --confusion-csv "$RUN_DIR/test_confusion.csv" | tee "$RUN_DIR/test_report.txt"
"$FINCH" eval --model "$RUN_DIR/best.safetensors" --dataset idx --root "$DATA" --split test \
  --json > "$RUN_DIR/test_metrics.json"

echo "== checking the data itself: finch data doctor (docs/data-doctor.md)"
"$FINCH" data doctor --dataset idx --root "$DATA" --out "$RUN_DIR/doctor" --progress none

echo "== writing the report (test split from $RUN_DIR/config.yaml)"
REPORT=$("$FINCH" report "$RUN_DIR" --out "$RUN_DIR/report.html")

echo "== the model card and an ONNX copy (docs/export.md)"
"$FINCH" export --model "$RUN_DIR/best.safetensors" --format card --out "$RUN_DIR/README.md"
"$FINCH" export --model "$RUN_DIR/best.safetensors" --format onnx --dynamic-batch \
  --out "$RUN_DIR/best.onnx"

echo "== done: run folder $RUN_DIR (model, README.md card, best.onnx, metrics.jsonl, test_metrics.json, test_confusion.csv, doctor/)"
echo "== report: $REPORT (open it in a browser; scripts/check_report.sh checks it offline)"
