#!/usr/bin/env bash
# The mcdrop-server binary as an operator runs it: start on free ports, health
# through mcdrop-client, a prediction, the /metrics exposition checked by
# promtool, then SIGTERM while requests are in flight: they must complete, the
# process must exit 0 within the grace period, and a call after it must fail.
#   process_test.sh MCDROP_SERVER MCDROP_CLIENT MODEL
set -euo pipefail
server=$1 client=$2 model=$3
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
port=$(free_port)
mport=$(free_port)
digits="$(dirname "$model")/digits.safetensors"
"$server" --model "concrete=$model" --model "digits=$digits" --host 127.0.0.1 --port "$port" --metrics_host 127.0.0.1 \
  --metrics_port "$mport" --http_port 0 --threads 2 --grace_period 60s 2> "$tmp/server.log" &
spid=$!
pids+=("$spid")
target="127.0.0.1:$port"
for _ in $(seq 1 100); do
  "$client" health --target "$target" --timeout 1s >/dev/null 2>&1 && break
  sleep 0.1
done
"$client" health --target "$target" | grep -qx SERVING
echo "ok: health SERVING"

/usr/bin/python3 "$(dirname "$0")/reflection_check.py" "$target"

"$client" predict --target "$target" --input "540,0,0,162,2.5,1040,676,28" --samples 500 \
  --seed 3 --intervals 0.9 | tee "$tmp/predict.txt"
grep -q "row 0  mean" "$tmp/predict.txt"
grep -q "90%: \[" "$tmp/predict.txt"
echo "ok: predict"

if ! "$client" predict --target "$target" --input "1,2,3" 2> "$tmp/bad.txt"; then
  grep -q "INVALID_ARGUMENT" "$tmp/bad.txt"
  echo "ok: bad input refused: $(cat "$tmp/bad.txt")"
else
  echo "FAIL: a 3-value row was accepted"; exit 1
fi

# The bundled classifier: a blank image and a clear "0" from the digits data.
"$client" predict --target "$target" --model digits --samples 100 --input \
  "$(python3 -c 'print(",".join(["0"]*64))');0,0,5,13,9,1,0,0,0,0,13,15,10,15,5,0,0,3,15,2,0,11,8,0,0,4,12,0,0,8,8,0,0,5,8,0,0,9,8,0,0,4,11,0,1,12,7,0,0,2,14,5,10,12,0,0,0,0,6,13,10,0,0,0" \
  | tee "$tmp/digits.txt"
grep -q "row 1  class 0" "$tmp/digits.txt"
echo "ok: the bundled digits model reads a 0"

# A standard-error target, streamed: running estimates on stderr, in order,
# then the answer with each row's T.
"$client" predict --target "$target" --model digits --stream --seed 5 \
  --target_standard_error 0.01 --input "$(python3 -c 'print(",".join(["4"]*64))')" \
  > "$tmp/stream.txt" 2> "$tmp/estimates.txt"
cat "$tmp/estimates.txt" "$tmp/stream.txt"
[ "$(grep -c '^\[T ' "$tmp/estimates.txt")" -ge 1 ]
grep -o '^\[T *[0-9]*' "$tmp/estimates.txt" | tr -dc '0-9\n' | sort -n -c
grep -q "target met" "$tmp/stream.txt"
echo "ok: predict --stream with a target"

curl -sf "http://127.0.0.1:$mport/metrics" > "$tmp/metrics.txt"
promtool check metrics < "$tmp/metrics.txt"
grep -q 'mcdrop_requests_total{api="mcdrop.v1",code="OK",model="concrete",protocol="grpc"} 1' "$tmp/metrics.txt"
grep -q 'mcdrop_requests_total{api="mcdrop.v1",code="INVALID_ARGUMENT",model="concrete",protocol="grpc"} 1' "$tmp/metrics.txt"
grep -q 'mcdrop_predictive_entropy_nats_count{model="digits",version="1"} 3' "$tmp/metrics.txt"
grep -q 'mcdrop_mutual_information_nats_count{model="digits",version="1"} 3' "$tmp/metrics.txt"
grep -q 'mcdrop_requests_total{api="mcdrop.v1.stream",code="OK",model="digits",protocol="grpc"} 1' "$tmp/metrics.txt"
grep -q 'mcdrop_adaptive_samples_count{model="digits"} 1' "$tmp/metrics.txt"
echo "ok: promtool check metrics, counts"

# Three long requests in flight (0.3 s each on 2 idle cores, several seconds
# under the sanitizers), then SIGTERM: all must finish within the grace period.
rows=$(python3 -c 'print(";".join(["540,0,0,162,2.5,1040,676,28"] * 100))')
cpids=()
for i in 1 2 3; do
  "$client" predict --target "$target" --input "$rows" --samples 20000 --seed "$i" \
    --timeout 60s > "$tmp/long$i.txt" 2>&1 &
  cpids+=($!)
done
# Wait until all three are admitted (each first asks for the metadata).
for _ in $(seq 1 400); do
  grep -q '^mcdrop_inflight_requests 3' <(curl -s "http://127.0.0.1:$mport/metrics") && break
  sleep 0.025
done
grep -q '^mcdrop_inflight_requests 3' <(curl -s "http://127.0.0.1:$mport/metrics") \
  || { echo "FAIL: the three long requests were not in flight together"; exit 1; }
start=$(date +%s.%N)
kill -TERM "$spid"
sleep 0.2
if "$client" predict --target "$target" --input "540,0,0,162,2.5,1040,676,28" --timeout 2s \
    > "$tmp/late.txt" 2>&1; then
  echo "FAIL: a call after SIGTERM succeeded"; exit 1
fi
echo "ok: call after SIGTERM refused: $(head -c 120 "$tmp/late.txt")"
for i in 0 1 2; do
  if ! wait "${cpids[$i]}"; then
    echo "FAIL: in-flight request $((i + 1)) failed:"; cat "$tmp/long$((i + 1)).txt"; exit 1
  fi
done
echo "ok: 3 in-flight requests completed"
set +e
wait "$spid"
rc=$?
set -e
end=$(date +%s.%N)
took=$(python3 -c "print(round($end - $start, 2))")
[ "$rc" -eq 0 ] || { echo "FAIL: server exited $rc"; cat "$tmp/server.log"; exit 1; }
python3 -c "import sys; sys.exit(0 if $took < 60 else 1)" || { echo "FAIL: exit took $took s"; exit 1; }
grep -q "received SIGTERM" "$tmp/server.log"
echo "ok: exit 0, $took s after SIGTERM"
