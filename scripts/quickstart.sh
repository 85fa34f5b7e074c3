#!/usr/bin/env bash
# Quick start: installs the dependencies, builds mcdrop, starts mcdrop-server
# on the bundled model(s) (gRPC on :50051, the Open Inference Protocol's
# HTTP/REST API on :8000, Prometheus metrics on :9464), and,
# once it reports SERVING, shows a real prediction made through
# mcdrop-client. The server then keeps running in the foreground until
# Ctrl-C (or SIGTERM), when it drains and exits.
#   MCDROP_PORT=50051 MCDROP_HTTP_PORT=8000 MCDROP_METRICS_PORT=9464 scripts/quickstart.sh
set -euo pipefail
cd "$(dirname "$0")/.."
port=${MCDROP_PORT:-50051}
mport=${MCDROP_METRICS_PORT:-9464}
hport=${MCDROP_HTTP_PORT:-8000}
bash scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" --target mcdrop-server mcdrop-client mcdrop-model mcdrop-train

models=()
for f in models/*.safetensors; do models+=(--model "$f"); done
./build/server/mcdrop-server "${models[@]}" --port "$port" --metrics_port "$mport" --http_port "$hport" &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server' INT TERM
for _ in $(seq 1 100); do
  ./build/client/mcdrop-client health --target "localhost:$port" --timeout 1s >/dev/null 2>&1 && break
  sleep 0.1
done
./build/client/mcdrop-client health --target "localhost:$port"
./build/client/mcdrop-client models --target "localhost:$port"
echo
echo "Two concrete mixes (measured: 79.99 MPa at 28 days, 40.27 MPa at 270 days), T = 10000:"
./build/client/mcdrop-client predict --target "localhost:$port" --model concrete \
  --input "540,0,0,162,2.5,1040,676,28;332.5,142.5,0,228,0,932,594,270" \
  --samples 10000 --seed 7 --intervals 0.9,0.95
echo
echo "The digits classifier on a clear handwritten 0 and on a blank image (T = 100):"
zero="0,0,5,13,9,1,0,0,0,0,13,15,10,15,5,0,0,3,15,2,0,11,8,0,0,4,12,0,0,8,8,0,0,5,8,0,0,9,8,0,0,4,11,0,1,12,7,0,0,2,14,5,10,12,0,0,0,0,6,13,10,0,0,0"
blank=$(printf '0%.0s,' $(seq 1 63))0
./build/client/mcdrop-client predict --target "localhost:$port" --model digits \
  --input "$zero;$blank" --samples 100 --seed 7
echo
echo "The same concrete mix over HTTP (Open Inference Protocol), T = 1000:"
curl -s "localhost:$hport/v2/models/concrete/infer" -H 'Content-Type: application/json' -d \
  '{"parameters": {"samples": 1000, "seed": 7, "interval_levels": 0.9}, "outputs": [{"name": "mean"}, {"name": "std"}, {"name": "interval_lower"}, {"name": "interval_upper"}], "inputs": [{"name": "input", "shape": [1, 8], "datatype": "FP32", "data": [540, 0, 0, 162, 2.5, 1040, 676, 28]}]}'
echo
cat <<MSG

mcdrop-server is running (pid $server): gRPC on localhost:$port, HTTP/REST on
http://localhost:$hport/v2, metrics on http://localhost:$mport/metrics.
From another terminal:
  build/client/mcdrop-client predict --target localhost:$port --input "540,0,0,162,2.5,1040,676,28" --samples 1000
  build/client/mcdrop-client predict --target localhost:$port --file rows.csv --json
  curl -s localhost:$hport/v2/models/digits
  curl -s localhost:$mport/metrics | grep mcdrop_
Ctrl-C stops it (it drains in-flight calls first).
MSG
wait $server
