#!/usr/bin/env bash
# Runs the engine benchmark with repetitions and prints the table of
# docs/performance.md (medians; ratios from the same run).
#   bench/run.sh [build-dir] [extra benchmark flags...]
set -euo pipefail
build=${1:-build}
shift || true
out=$(mktemp --suffix=.json)
"$build/bench/engine_bench" --benchmark_repetitions=5 \
  --benchmark_report_aggregates_only=true --benchmark_min_time=0.2 \
  --benchmark_out="$out" --benchmark_out_format=json \
  --benchmark_filter="${MCDROP_BENCH_FILTER:-BM_(Engine|EngineBf16|PlainGemm|LibraryGemm|FmaPeak)/}" "$@" >&2
python3 "$(dirname "$0")/report.py" "$out"
