#!/usr/bin/env bash
# Install what eigenbatch needs to build, test and benchmark on Debian 12 (run as root).
#   deploy/install-deps.sh          build + test dependencies and the Fashion-MNIST data package
#   deploy/install-deps.sh --build  what building the binary needs, nothing more (deploy/Dockerfile)
#   deploy/install-deps.sh --bench  also the comparison tools used by bench/ (PyTorch, torchvision, PIL, perf)
# The tests use docker-compose (Debian's, 1.29) only to validate deploy/'s compose files
# (`docker-compose config`: no Docker daemon needed) and python3-yaml to read them.
set -euo pipefail

pkgs=(
  build-essential cmake pkg-config
  libopenblas-dev libzmq3-dev libprotobuf-c-dev protobuf-c-compiler
  liblmdb-dev libyaml-dev libjansson-dev zlib1g-dev
  libjpeg62-turbo-dev libturbojpeg0-dev libpng-dev libcmocka-dev libmicrohttpd-dev libdnnl-dev
)
if [ "${1:-}" != "--build" ]; then
  pkgs+=(lmdb-utils dataset-fashion-mnist python3 python3-numpy python3-pil python3-yaml python3-crc32c
         gnuplot-nox clang-format clang libfuzzer-14-dev docker-compose)
fi
if [ "${1:-}" = "--bench" ]; then
  pkgs+=(python3-torch python3-torchvision python3-pil linux-perf)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
