#!/usr/bin/env bash
# mcdrop-client against real server processes:
#  1. --lb round_robin over two servers puts load on both (their metrics
#     show it, and the counts add up to what bench sent);
#  2. eval's regression figures on a UCI split equal mcdrop-train's own
#     evaluation of the same model file and split.
#   cli_test.sh MCDROP_SERVER MCDROP_CLIENT MCDROP_TRAIN UCI_DIR
set -euo pipefail
server=$1 client=$2 train=$3 uci=$4
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_healthy() {
  for _ in $(seq 1 100); do "$client" health --target "$1" --timeout 1s >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "FAIL: $1 never became healthy"; exit 1
}

# A model trained on yacht split 0, scored by the trainer on the split's test part.
"$train" fit --uci "$uci" --split 0 --dropout 0.01 --tau 0.5 --epochs 300 --samples 1000 \
  --quiet --out "$tmp/yacht.safetensors" > "$tmp/fit.txt"
cat "$tmp/fit.txt"
train_rmse=$(sed -n 's/.*RMSE \([0-9.]*\) .*/\1/p' "$tmp/fit.txt")
train_ll=$(sed -n 's/.*log-likelihood \([-0-9.]*\).*/\1/p' "$tmp/fit.txt")

ports=() mports=()
for i in 0 1; do
  ports+=("$(free_port)"); mports+=("$(free_port)")
  "$server" --model "yacht=$tmp/yacht.safetensors" --host 127.0.0.1 --port "${ports[$i]}" \
    --metrics_host 127.0.0.1 --metrics_port "${mports[$i]}" --http_port 0 --threads 1 2> "$tmp/server$i.log" &
  pids+=($!)
done
wait_healthy "127.0.0.1:${ports[0]}"
wait_healthy "127.0.0.1:${ports[1]}"

# models --json parses and describes the served model.
"$client" models --target "127.0.0.1:${ports[0]}" --json > "$tmp/models.json"
python3 - "$tmp/models.json" <<'PY2'
import json, sys
m = json.load(open(sys.argv[1]))["models"]
assert [x["name"] for x in m] == ["yacht"], m
assert m[0]["layer_sizes"] == [6, 50, 1] and m[0]["task"] == "REGRESSION", m[0]
assert m[0]["versions"][0]["state"] == "AVAILABLE", m[0]
print("ok: models --json")
PY2

# 1. Round robin.
"$client" bench --target "ipv4:127.0.0.1:${ports[0]},127.0.0.1:${ports[1]}" --lb round_robin \
  --requests 400 --concurrency 8 --warmup 0s --samples 20 --json > "$tmp/bench.json"
cat "$tmp/bench.json"
count() {
  curl -s "http://127.0.0.1:$1/metrics" | sed -n 's/^mcdrop_requests_total{api="mcdrop.v1",code="OK",model="yacht",protocol="grpc"} //p'
}
a=$(count "${mports[0]}") b=$(count "${mports[1]}")
echo "server 0 answered $a, server 1 answered $b"
python3 - "$a" "$b" "$tmp/bench.json" <<'PY'
import json, sys
a, b = float(sys.argv[1]), float(sys.argv[2])
report = json.load(open(sys.argv[3]))
assert report["count"] == 400 and report["errors"] == 0, report
assert a + b == 400, (a, b)
assert a >= 100 and b >= 100, f"round robin left a server idle: {a} / {b}"
PY
echo "ok: round_robin spread 400 calls over both servers"

# 2. eval on split 0's test rows, with the trainer's T and seed schedule.
python3 - "$uci" "$tmp/test.csv" <<'PY'
import sys
uci, out = sys.argv[1], sys.argv[2]
rows = [l.split() for l in open(f"{uci}/data.txt") if l.strip()]
feats = [int(float(x)) for x in open(f"{uci}/index_features.txt").read().split()]
target = int(float(open(f"{uci}/index_target.txt").read().split()[0]))
test = [int(float(x)) for x in open(f"{uci}/index_test_0.txt").read().split()]
with open(out, "w") as f:
    for i in test:
        f.write(",".join([rows[i][c] for c in feats] + [rows[i][target]]) + "\n")
PY
"$client" eval --target "127.0.0.1:${ports[0]}" --file "$tmp/test.csv" --samples 1000 --seed 1 \
  --json > "$tmp/eval.json"
cat "$tmp/eval.json"
python3 - "$tmp/eval.json" "$train_rmse" "$train_ll" <<'PY'
import json, sys
e = json.load(open(sys.argv[1]))
rmse, ll = float(sys.argv[2]), float(sys.argv[3])
# mcdrop-train prints 4 decimals.
assert abs(e["rmse"] - rmse) < 6e-5, (e["rmse"], rmse)
assert abs(e["log_likelihood"] - ll) < 6e-5, (e["log_likelihood"], ll)
print(f"ok: eval RMSE {e['rmse']:.4f} LL {e['log_likelihood']:.4f} == mcdrop-train's {rmse} {ll}")
PY
"$client" eval --target "127.0.0.1:${ports[0]}" --file "$tmp/test.csv" --samples 1000 | tee "$tmp/eval.txt"
grep -q "95%" "$tmp/eval.txt"
