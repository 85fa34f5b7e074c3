#!/usr/bin/env bash
# The digits classifier and the picture of its uncertainty, end to end:
#   1. split the digits table, $MCDROP_DIGITS (prepare.py describes it; CI
#      keeps it outside the repository), row i a test row iff i % 4 == 3;
#   2. with --retrain, train models/digits.safetensors with mcdrop-train;
#   3. start mcdrop-server on it, score the test split with mcdrop-client eval
#      (MC, T = 100, and dropout off);
#   4. rotate and noise the test digits, query the server, and write the data,
#      the figure (docs/figures/digits_uncertainty.svg, gnuplot) and the
#      out-of-distribution AUROC table.
#   experiments/digits/run.sh [--retrain]
# MCDROP_SERVER_FLAGS adds server flags (e.g. "--precision bf16") and
# MCDROP_FIGURES moves the outputs (default docs/figures).
set -euo pipefail
cd "$(dirname "$0")/../.."
data=${MCDROP_DIGITS:-../shared/data/digits/digits.csv.gz}
command -v gnuplot >/dev/null || bash scripts/install-deps.sh --with-plots
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build --target mcdrop-server mcdrop-client mcdrop-train >/dev/null
tmp=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; rm -rf "$tmp"' EXIT
/usr/bin/python3 experiments/digits/prepare.py "$data" "$tmp"
if [ "${1:-}" = "--retrain" ]; then
  ./build/tools/mcdrop-train fit --data "$tmp/train.csv" --task classification \
    --hidden 128,128 --dropout 0.25 --input_dropout 0.1 --epochs 300 --seed 1 \
    --name digits --default_samples 100 \
    --description "8x8 handwritten digits (UCI optdigits test set) -> 10 classes; 64-128-128-10 ReLU MLP, MC dropout 0.1 on the input and 0.25 on the hidden layers" \
    --out models/digits.safetensors
fi
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
./build/server/mcdrop-server --model digits=models/digits.safetensors --host 127.0.0.1 \
  --port "$port" --metrics_port 0 --http_port 0 ${MCDROP_SERVER_FLAGS:-} 2> "$tmp/server.log" &
server=$!
for _ in $(seq 1 100); do
  ./build/client/mcdrop-client health --target "127.0.0.1:$port" >/dev/null 2>&1 && break
  sleep 0.1
done
echo "== test split, MC dropout (T = 100)"
./build/client/mcdrop-client eval --target "127.0.0.1:$port" --file "$tmp/test.csv" --samples 100
echo "== test split, dropout off"
./build/client/mcdrop-client eval --target "127.0.0.1:$port" --file "$tmp/test.csv" --deterministic
echo "== rotation, noise and out-of-distribution detection"
/usr/bin/python3 experiments/digits/uncertainty.py --client build/client/mcdrop-client \
  --target "127.0.0.1:$port" --test "$tmp/test.csv" --out "${MCDROP_FIGURES:-docs/figures}" --samples 100
gnuplot -e "dir='${MCDROP_FIGURES:-docs/figures}'" experiments/digits/plot.gp
echo "wrote docs/figures/digits_uncertainty.svg"
