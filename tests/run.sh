#!/usr/bin/env bash
# Build eigenbatch twice (optimised, and with AddressSanitizer + UndefinedBehaviorSanitizer) and run
# every CTest test in both, then run the libFuzzer harnesses briefly (clang). Heavy checks live in
# bench/, not here.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$jobs"
(cd build && ctest --output-on-failure -j "$jobs")

cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DEB_SANITIZE=ON -DEB_CUDA=OFF >/dev/null
cmake --build build-asan -j "$jobs"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 EB_SANITIZED=1 ctest --output-on-failure -j "$jobs")

# libFuzzer harnesses (tests/fuzz): a clang build of their own, then each harness for 10 s or
# 20000 inputs, whichever comes first; a crash, leak or sanitizer report fails the run.
probe=$(mktemp -d)
echo 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { return 0; }' \
  >"$probe/probe.c"
if command -v clang >/dev/null && clang -fsanitize=fuzzer "$probe/probe.c" -o "$probe/probe" \
  2>/dev/null; then
  rm -rf "$probe"
  bash bench/fuzz.sh --seconds 10 --runs 20000 --build build-fuzz
else
  rm -rf "$probe"
  echo "tests/run.sh: SKIPPED the fuzzing step: clang with libFuzzer is missing" \
       "(apt-get install clang libfuzzer-14-dev)" >&2
fi
