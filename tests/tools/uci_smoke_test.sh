#!/usr/bin/env bash
# End-to-end smoke run of the paper's UCI protocol (grid search, retrain, MC
# evaluation through the engine) on the bundled copy of yacht: 2 splits, the
# published epoch count, T = 1000. Loose but honest thresholds: the published
# figures are RMSE 0.67 and LL -1.25; predicting the mean gives RMSE ~15.
#   uci_smoke_test.sh MCDROP_TRAIN MCDROP_MODEL DATA_DIR
set -euo pipefail
train=$1 model_tool=$2 data=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$train" uci --data "$data" --splits 2 --epoch_multiplier 100 --samples 1000 \
  --quiet --out "$tmp/table.md" > "$tmp/stdout.md"
cat "$tmp/stdout.md"
grep -q '^### yacht' "$tmp/table.md"
row=$(grep '^| mcdrop |' "$tmp/stdout.md")
rmse=$(echo "$row" | awk -F'|' '{split($3, a, " "); print a[1]}')
ll=$(echo "$row" | awk -F'|' '{split($4, a, " "); print a[1]}')
echo "smoke: RMSE $rmse, LL $ll"
awk -v r="$rmse" -v l="$ll" 'BEGIN { exit !(r > 0 && r < 1.5 && l > -2.0 && l < 0) }' \
  || { echo "FAIL: RMSE $rmse or LL $ll outside (0, 1.5) / (-2, 0)"; exit 1; }
# Two split rows, each with a (p, tau) from the grid.
[ "$(grep -cE '^\| [01] \| 0\.[0-9]+ \| 0\.[0-9]+ \|' "$tmp/stdout.md")" -eq 2 ] \
  || { echo "FAIL: expected one row per split"; exit 1; }

# fit writes a model the engine serves, in raw units.
"$train" fit --uci "$data" --split 0 --dropout 0.01 --tau 0.5 --epochs 200 \
  --samples 200 --quiet --out "$tmp/m.safetensors" > "$tmp/fit.txt"
cat "$tmp/fit.txt"
grep -q 'test (' "$tmp/fit.txt"
"$model_tool" info "$tmp/m.safetensors" | grep -q 'layers:      6 -> 50 -> 1'
"$model_tool" predict "$tmp/m.safetensors" --input "-2.3,0.568,4.78,3.99,3.17,0.125" \
  --samples 500 | grep -q 'row 0 output 0: mean'
