#!/usr/bin/env bash
# Build eigenbatch twice (optimised, and with AddressSanitizer + UndefinedBehaviorSanitizer) and run
# every CTest test in both. Heavy checks live in bench/, not here.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$jobs"
(cd build && ctest --output-on-failure -j "$jobs")

cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DEB_SANITIZE=ON -DEB_CUDA=OFF >/dev/null
cmake --build build-asan -j "$jobs"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 EB_SANITIZED=1 ctest --output-on-failure -j "$jobs")
