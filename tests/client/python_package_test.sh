#!/usr/bin/env bash
# The Python package as a user installs it: the shipped gRPC stubs are what
# client/python/generate_stubs.sh makes from proto/ now; `pip install
# ./client/python` works offline (--no-index) in a fresh virtual environment
# that sees Debian's grpcio and NumPy; the installed package imports from
# outside the source tree and its console command talks to a live server.
#   python_package_test.sh SERVER_BIN MODELS_DIR
set -euo pipefail
server=$(realpath "$1") models=$(realpath "$2")
root=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
spid=""
cleanup() {
  if [ -n "$spid" ]; then kill -9 "$spid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

bash "$root/client/python/generate_stubs.sh" "$tmp/stubs"
for f in v1/inference_pb2.py v1/inference_pb2_grpc.py \
         inference/open_inference_grpc_pb2.py inference/open_inference_grpc_pb2_grpc.py; do
  if ! cmp -s "$tmp/stubs/mcdrop/$f" "$root/client/python/mcdrop/$f"; then
    echo "FAIL: client/python/mcdrop/$f is stale: run client/python/generate_stubs.sh"
    exit 1
  fi
done

/usr/bin/python3 -m venv --system-site-packages "$tmp/venv"
# A copy, so that the build's files stay out of the source tree.
cp -r "$root/client/python" "$tmp/src"
"$tmp/venv/bin/pip" install --no-index --quiet "$tmp/src" > "$tmp/pip.log" 2>&1 || {
  cat "$tmp/pip.log"; echo "FAIL: pip install"; exit 1; }
cd "$tmp"
"$tmp/venv/bin/python" - <<'PY'
import mcdrop, mcdrop.oip, mcdrop.v1.inference_pb2, mcdrop.inference.open_inference_grpc_pb2_grpc
assert "site-packages" in mcdrop.__file__, mcdrop.__file__
assert hasattr(mcdrop, "Client") and hasattr(mcdrop.oip, "OipHttpClient")
print("installed:", mcdrop.__file__)
PY

port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
hport=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
"$server" --model "$models/concrete.safetensors" --host 127.0.0.1 --port "$port" \
  --http_port "$hport" --metrics_port 0 2> "$tmp/server.log" &
spid=$!
for _ in $(seq 1 100); do
  "$tmp/venv/bin/mcdrop-oip" --url "http://127.0.0.1:$hport" health > /dev/null 2>&1 && break
  sleep 0.1
done
kill -0 "$spid" 2>/dev/null || { cat "$tmp/server.log"; echo "FAIL: the server did not start"; exit 1; }
"$tmp/venv/bin/mcdrop-oip" --url "http://127.0.0.1:$hport" infer concrete \
  --input "540,0,0,162,2.5,1040,676,28" --samples 200 --seed 3 > "$tmp/http.json"
"$tmp/venv/bin/mcdrop-oip" --grpc "127.0.0.1:$port" infer concrete \
  --input "540,0,0,162,2.5,1040,676,28" --samples 200 --seed 3 > "$tmp/grpc.json"
/usr/bin/python3 - "$tmp/http.json" "$tmp/grpc.json" <<'PY'
import json, sys
h, g = (json.load(open(p)) for p in sys.argv[1:])
p = dict(h["parameters"]); assert len(p.pop("prediction_id")) == 29, h["parameters"]
assert p == {"samples": 200, "seed": 3}, h["parameters"]
assert h["outputs"] == g["outputs"], (h["outputs"], g["outputs"])
assert 20 < h["outputs"]["mean"][0][0] < 120, h["outputs"]["mean"]
print("mcdrop-oip over HTTP and gRPC: mean", h["outputs"]["mean"][0][0])
PY
"$tmp/venv/bin/python" - "http://127.0.0.1:$hport" <<'PY'
import sys
import numpy as np
from mcdrop.oip import OipHttpClient
c = OipHttpClient(sys.argv[1])
r = c.infer("concrete", np.array([[540, 0, 0, 162, 2.5, 1040, 676, 28]], dtype=np.float32), samples=100)
pid = r.parameters["prediction_id"]
doc = c.feedback("concrete", [pid + ":0", pid + ":7"], targets=[r["mean"][0, 0], 1.0])
assert doc["accepted"] == 1, doc
assert [x["outcome"] for x in doc["results"]] == ["ACCEPTED", "UNKNOWN_ID"], doc
print("OipHttpClient.feedback: ok")
PY
if "$tmp/venv/bin/mcdrop-oip" --url "http://127.0.0.1:$hport" infer nope --input 1 2> "$tmp/err.txt"; then
  echo "FAIL: an unknown model succeeded"; exit 1
fi
grep -q "404" "$tmp/err.txt" || { cat "$tmp/err.txt"; echo "FAIL: no 404"; exit 1; }
echo "python package: ok"
