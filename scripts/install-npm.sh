#!/usr/bin/env bash
# Installs the npm packages finch's tests and benchmarks use as peers into one folder
# (default build/npm): onnxruntime-node, ONNX Runtime's CPU library inside the package, for
# checking `finch export --format onnx` and for bench/. Lifecycle scripts are ignored, so
# nothing is downloaded besides the packages themselves. Idempotent.
#
# usage: scripts/install-npm.sh [PREFIX=build/npm]
set -euo pipefail
PREFIX=${1:-build/npm}
PACKAGES=(onnxruntime-node@1.30.0)

mkdir -p "$PREFIX"
PREFIX=$(cd "$PREFIX" && pwd)
have_all=1
for p in "${PACKAGES[@]}"; do
  name=${p%@*}
  version=${p##*@}
  installed=$(node -p "require('$PREFIX/node_modules/$name/package.json').version" 2>/dev/null || true)
  [ "$installed" = "$version" ] || have_all=0
done
if [ $have_all = 1 ]; then
  echo "install-npm: ${PACKAGES[*]} present in $PREFIX"
  exit 0
fi
echo "install-npm: installing ${PACKAGES[*]} into $PREFIX"
npm install --prefix "$PREFIX" --ignore-scripts --no-audit --no-fund --no-save "${PACKAGES[@]}"
