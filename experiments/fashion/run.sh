#!/usr/bin/env bash
# The bundled Fashion-MNIST LeNets and the picture of their uncertainty,
# through the server only:
#   1. with --retrain, train both models (experiments/fashion/train.py, PyTorch);
#   2. start mcdrop-server on models/fashion_lenet*.safetensors;
#   3. rotate a test item, score clean and out-of-distribution inputs, and write
#      docs/figures/fashion_rotation_*.dat, docs/figures/fashion_uncertainty.svg
#      and the tables (stdout).
#   experiments/fashion/run.sh [--retrain]
# Needs dataset-fashion-mnist and python3-torch (scripts/install-deps.sh),
# gnuplot (--with-plots), and the 8x8 digits ($MCDROP_DIGITS).
set -euo pipefail
cd "$(dirname "$0")/../.."
digits=${MCDROP_DIGITS:-../shared/data/digits/digits.csv.gz}
out=${MCDROP_FIGURES:-docs/figures}
command -v gnuplot >/dev/null || bash scripts/install-deps.sh --with-plots
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build --target mcdrop-server >/dev/null
if [ "${1:-}" = "--retrain" ]; then
  PYTHONPATH=client/python /usr/bin/python3 experiments/fashion/train.py models
fi
tmp=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; rm -rf "$tmp"' EXIT
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
./build/server/mcdrop-server --model fashion_lenet=models/fashion_lenet.safetensors \
  --model fashion_lenet_all=models/fashion_lenet_all.safetensors --host 127.0.0.1 \
  --port "$port" --metrics_port 0 --http_port 0 ${MCDROP_SERVER_FLAGS:-} 2> "$tmp/server.log" &
server=$!
for _ in $(seq 1 100); do
  ./build/client/mcdrop-client health --target "127.0.0.1:$port" >/dev/null 2>&1 && break
  sleep 0.1
done
PYTHONPATH=client/python /usr/bin/python3 experiments/fashion/uncertainty.py \
  --target "127.0.0.1:$port" --digits "$digits" --out "$out" --samples 100 --n "${MCDROP_FASHION_N:-2000}"
gnuplot -e "dir='$out'" experiments/fashion/plot.gp
echo "wrote $out/fashion_uncertainty.svg"
