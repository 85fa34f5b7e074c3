#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) and runs each for
# SECONDS (default 60) from the seed corpora in fuzz/corpus/. Fails on any
# crash, leak, sanitizer report or timeout; the input that caused it is left
# in build-fuzz/findings/.
#   scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DMCDROP_FUZZ=ON -DMCDROP_BUILD_TESTS=OFF -DMCDROP_BUILD_BENCH=OFF >/dev/null
cmake --build build-fuzz -j "$(nproc)" --target model_file_fuzz predict_request_fuzz http_request_fuzz
mkdir -p build-fuzz/findings
for t in model_file predict_request http_request; do
  work=build-fuzz/corpus-$t
  mkdir -p "$work"
  echo "== fuzz $t for ${seconds}s"
  # New inputs go to the scratch corpus; the committed seeds are read only.
  if ! build-fuzz/fuzz/${t}_fuzz "$work" "fuzz/corpus/$t" -max_total_time="$seconds" \
      -max_len=65536 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix=build-fuzz/findings/$t- > "build-fuzz/$t.log" 2>&1; then
    grep -v '^\[libprotobuf' "build-fuzz/$t.log" | tail -60
    echo "FAIL: the $t fuzzer found a crash (input in build-fuzz/findings)"
    exit 1
  fi
  grep -E "^(#[0-9]+ +DONE|stat::)" "build-fuzz/$t.log" || true
done
echo "fuzz: no crash in ${seconds}s per target"
