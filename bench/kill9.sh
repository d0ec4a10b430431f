#!/usr/bin/env bash
# Crash consistency of training: kill -9 a Fashion-MNIST run at KILLS random moments (start-up,
# mid-epoch, validation; every 4th one inside a checkpoint write), resume it each time, and
# check that every resume starts and that the final weights equal an uninterrupted run's bit
# for bit (CPU, 1 compute thread).
#
#   bench/kill9.sh [KILLS=20] [SEED=1]      (from the repository root, after the build)
#
# Prints one line per kill (what the run folder held at that moment) and a summary; exits
# non-zero if a resume failed or the weights differ. Figures go to docs/reliability.md.
set -euo pipefail

KILLS=${1:-20}
SEED=${2:-1}
FINCH=${FINCH:-build/finch}
OUT=${OUT:-${TMPDIR:-/tmp}/finch-kill9}
ROOT=${FMNIST_ROOT:-/usr/share/datasets/fashion-mnist}
SETS=(--set data.root="$ROOT" --set data.val_fraction=0.02 --set train.epochs=4
      --set train.max_steps_per_epoch=60
      --set train.batch_size=64 --set train.checkpoint_every=5 --set threads=1
      --set train.progress=none)

[ -x "$FINCH" ] || { echo "kill9.sh: $FINCH not built (ninja -C build)" >&2; exit 2; }
rm -rf "$OUT"
mkdir -p "$OUT"

now() { date +%s.%N; }

echo "uninterrupted run..."
t0=$(now)
"$FINCH" train --config configs/fashion_mnist.yaml --out "$OUT/straight" "${SETS[@]}" \
  > "$OUT/straight.log" 2>&1
straight_s=$(echo "$(now) - $t0" | bc)
echo "  ${straight_s} s"

# Delays are uniform in [0.1 s, 2 s + twice the run's time / KILLS]: an attempt on average gets
# through start-up (about 1-2 s) and some steps, so the kills spread over the whole run.
RANDOM=$SEED
max_ms=$(echo "2000 + $straight_s * 2000 / $KILLS" | bc | cut -d. -f1)
landed=0 in_checkpoint=0 in_model_file=0 failed_resumes=0 finished_early=0
for ((k = 1; k <= KILLS; k++)); do
  if [ -d "$OUT/killed/checkpoint" ] || [ -d "$OUT/killed/checkpoint.old" ]; then
    cmd=("$FINCH" train --resume "$OUT/killed")
  else
    rm -rf "$OUT/killed"  # killed before its first checkpoint: start over, as a user would
    cmd=("$FINCH" train --config configs/fashion_mnist.yaml --out "$OUT/killed" "${SETS[@]}")
  fi
  "${cmd[@]}" > "$OUT/attempt-$k.log" 2>&1 &
  pid=$!
  delay_ms=$((100 + (RANDOM * 32768 + RANDOM) % (max_ms > 100 ? max_ms - 100 : 1)))
  sleep "$(echo "scale=3; $delay_ms / 1000" | bc)"
  if ((k % 4 == 0)); then
    # Every 4th kill waits for the next checkpoint write to begin and strikes inside it.
    while kill -0 "$pid" 2> /dev/null && [ ! -e "$OUT/killed/checkpoint.new" ]; do :; done
  fi
  if kill -9 "$pid" 2> /dev/null; then
    wait "$pid" 2> /dev/null || true
    landed=$((landed + 1))
    what=""
    if [ -d "$OUT/killed/checkpoint.new" ] || [ -d "$OUT/killed/checkpoint.old" ]; then
      what=" inside a checkpoint write"
      in_checkpoint=$((in_checkpoint + 1))
    fi
    if ls "$OUT"/killed/*.tmp-* > /dev/null 2>&1; then
      what="$what inside a model-file write"
      in_model_file=$((in_model_file + 1))
    fi
    step=$(sed -n 's/.*"global_step": \([0-9]*\).*/\1/p' "$OUT/killed/checkpoint/state.json" \
             2> /dev/null || true)
    echo "kill $k after ${delay_ms} ms: checkpoint at step ${step:-none}$what"
  else
    wait "$pid" && rc=0 || rc=$?
    if [ "$rc" -ne 0 ]; then
      echo "kill $k: the attempt exited with $rc before the kill (resume failed):"
      tail -3 "$OUT/attempt-$k.log"
      failed_resumes=$((failed_resumes + 1))
    else
      echo "kill $k: the run finished before the kill (${delay_ms} ms)"
      finished_early=1
      break
    fi
  fi
done

if [ "$finished_early" -eq 0 ]; then
  echo "final resume..."
  if ! "$FINCH" train --resume "$OUT/killed" > "$OUT/final.log" 2>&1; then
    failed_resumes=$((failed_resumes + 1))
    tail -5 "$OUT/final.log"
  fi
fi

same=yes
for f in last.safetensors best.safetensors; do
  cmp -s "$OUT/straight/$f" "$OUT/killed/$f" || { same=no; echo "$f differs"; }
done
epochs=$(cut -d, -f1 "$OUT/killed/metrics.jsonl" | tr -d '{"epoch:' | tr '\n' ' ')
echo
echo "kills landed: $landed of $KILLS ($in_checkpoint inside a checkpoint write, $in_model_file" \
  "inside a model-file write); failed resumes: $failed_resumes; metrics epochs: $epochs"
echo "final weights bit-identical to the uninterrupted run: $same"
[ "$same" = yes ] && [ "$failed_resumes" -eq 0 ]
