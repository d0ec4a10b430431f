#!/usr/bin/env bash
# Builds every libFuzzer target (clang, in build-fuzz/) and fuzzes each for SECONDS
# (default 60), with the limits finch promises: no input may take more than 1 s or 1 GB.
#   scripts/fuzz.sh [SECONDS] [TARGET...]
# Prints a table (executions, coverage, corpus, result) and writes it to
# build-fuzz/fuzz-summary.md; a crash, sanitizer report, timeout or out-of-memory input
# is left in build-fuzz/crashes/<target>/ and makes the script exit 1. The corpus grows in
# build-fuzz/corpus/<target>/ from one run to the next. See fuzz/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET=${1:-60}
shift || true
BUILD=${FINCH_FUZZ_BUILD:-build-fuzz}
ALL_TARGETS=(safetensors_fuzz gguf_fuzz tfjs_fuzz idx_fuzz image_fuzz config_fuzz base64_fuzz http_fuzz cub_fuzz
             nabirds_fuzz aircraft_fuzz inat_fuzz csv_fuzz cars_fuzz flowers102_fuzz dogs_fuzz)
TARGETS=("$@")
if [ $# -eq 0 ]; then TARGETS=("${ALL_TARGETS[@]}"); fi

bash scripts/install-deps.sh --fuzz
if [ ! -f "$BUILD/build.ninja" ]; then
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_CXX_COMPILER=clang++-14 -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DFINCH_BUILD_FUZZ=ON -DFINCH_BUILD_TESTS=OFF
fi
cmake --build "$BUILD" -j "$(nproc)" --target "${TARGETS[@]}"
/usr/bin/python3 fuzz/make_seed_corpus.py "$BUILD/seeds" > /dev/null

dictionary() {
  case "$1" in
    safetensors_fuzz) echo fuzz/safetensors.dict ;;
    tfjs_fuzz) echo fuzz/tfjs.dict ;;
    config_fuzz) echo fuzz/config.dict ;;
    http_fuzz) echo fuzz/http.dict ;;
    idx_fuzz | image_fuzz | base64_fuzz) ;;
    *) echo fuzz/dataset.dict ;;
  esac
}

summary="$BUILD/fuzz-summary.md"
{
  echo "| target | seconds | executions | exec/s | coverage (edges) | corpus | result |"
  echo "| --- | --- | --- | --- | --- | --- | --- |"
} > "$summary"
failed=0
for target in "${TARGETS[@]}"; do
  corpus="$BUILD/corpus/$target"
  crashes="$BUILD/crashes/$target/"
  log="$BUILD/logs/$target.log"
  mkdir -p "$corpus" "$crashes" "$(dirname "$log")"
  dict=$(dictionary "$target")
  echo "fuzz: $target for ${SECONDS_PER_TARGET}s"
  rc=0
  # Seeds are read but new inputs go to the first folder only.
  ASAN_OPTIONS=detect_leaks=1:detect_container_overflow=0 \
    "$BUILD/fuzz/$target" "$corpus" "$BUILD/seeds/$target" ${dict:+-dict=$dict} \
    -max_total_time="$SECONDS_PER_TARGET" -timeout=1 -rss_limit_mb=1024 -malloc_limit_mb=1024 \
    -artifact_prefix="$crashes" -print_final_stats=1 > "$log" 2>&1 || rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$( (grep -oE 'cov: [0-9]+' "$log" || true) | tail -1 | cut -d' ' -f2)
  corp=$(find "$corpus" -type f | wc -l)
  if [ "$rc" -eq 0 ]; then
    result="ok"
  else
    failed=1
    result="FAILED (exit $rc): $(grep -m1 -oE 'runtime error: .*|ERROR: [A-Za-z]+: [^ ]+( [^ ]+)?|ALARM: [^;]*|out-of-memory[^;]*' "$log" || echo see "$log"); input in $crashes"
  fi
  echo "| $target | $SECONDS_PER_TARGET | ${runs:-?} | ${speed:-?} | ${cov:-?} | $corp | $result |" >> "$summary"
done
cat "$summary"
exit $failed
