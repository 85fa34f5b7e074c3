#!/usr/bin/env bash
# Reproduces the paper's UCI regression table (20 splits, per-split grid search,
# T = 10000) with mcdrop-train and the serving engine, and writes the tables
# to the file given (default: results-uci.md).
#   scripts/reproduce-uci.sh [OUT] [extra mcdrop-train flags, e.g. --epoch_multiplier 10]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-results-uci.md}
shift || true
data=${MCDROP_UCI_DIR:-../shared/data/uci}
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build --target mcdrop-train >/dev/null
: > "$out"
for d in bostonHousing concrete energy kin8nm wine-quality-red yacht; do
  echo "== $d" >&2
  /usr/bin/time -f "$d: %e s wall, %U s user" \
    ./build/tools/mcdrop-train uci --data "$data/$d" --out "$out" --quiet "$@" >/dev/null
done
echo "wrote $out" >&2
