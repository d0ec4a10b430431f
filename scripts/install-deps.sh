#!/usr/bin/env bash
# Installs every Debian package finch needs to build, test and run its demo.
# Idempotent: packages already present are skipped; apt runs only when something is missing.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config
  libtorch-dev libopenblas0-pthread
  libopencv-core-dev libopencv-imgproc-dev libopencv-imgcodecs-dev
  libyaml-cpp-dev nlohmann-json3-dev libcli11-dev libfmt-dev zlib1g-dev
  libmatio-dev libfaiss-dev libcpp-httplib-dev
  libonnx-dev libprotobuf-dev  # ONNX protobuf + checker for `finch export --format onnx` (LibTorch links them too)
  pybind11-dev python3-dev  # the Python module (python/)
  libgloo-dev  # headers of the gloo collectives inside libtorch_cpu (c10d ProcessGroupGloo)
  libgtest-dev libgmock-dev
  dataset-fashion-mnist
  python3 python3-torch python3-torchvision python3-numpy python3-pil python3-sklearn python3-scipy
  python-matplotlib-data  # grace_hopper.jpg: a real photograph for the predict parity test
  chromium chromium-driver python3-selenium  # the serve web page tested in a real browser
  python3-fastapi python3-uvicorn python3-multipart wrk  # serving peer and load generator (bench/)
  procps iproute2  # pgrep in the torchrun restart test; ip netns for scripts/two_hosts.sh
)

# `--fuzz`: also clang and its libFuzzer runtime, for scripts/fuzz.sh (fuzz/README.md).
if [ "${1:-}" = "--fuzz" ]; then
  PACKAGES+=(clang-14 libclang-rt-14-dev)
fi

missing=()
# Node.js + npm run the ONNX Runtime peer (scripts/install-npm.sh). Checked by command: a
# nodejs from another source (NodeSource) bundles npm and conflicts with Debian's npm package.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  missing+=(nodejs npm)
fi
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
