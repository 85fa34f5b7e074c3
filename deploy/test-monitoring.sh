#!/usr/bin/env bash
# Monitoring, verified for real: promtool checks the Prometheus config and
# rules and runs the rule unit tests; then Debian's prometheus binary scrapes a
# live mcdrop-server (both bundled models, calibrated here on made-up rows so
# that the conformal series exist) under load from mcdrop-client bench, with
# 250 rows of feedback for each model, and every PromQL expression of the Grafana dashboard and of the rules is
# evaluated through Prometheus's HTTP API: each must succeed and return data.
# Alert expressions are evaluated with `bool` comparisons, so they return data
# whether or not they fire.
#   deploy/test-monitoring.sh MCDROP_SERVER MCDROP_CLIENT MCDROP_MODEL
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
server=$1 client=$2 model_tool=$3
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

promtool check config "$here/prometheus/prometheus.yml"
promtool check rules "$here/prometheus/mcdrop.rules.yml"
(cd "$here/prometheus" && promtool test rules mcdrop.rules.test.yml)
echo "ok: promtool check config, check rules, test rules"

# Calibrations from made-up labelled rows: they only have to exist here.
/usr/bin/python3 - "$tmp" <<'PY'
import sys
import numpy as np
rng = np.random.default_rng(3)
rows = np.column_stack([rng.uniform(100, 500, (60, 7)), rng.uniform(1, 100, 60), rng.uniform(10, 70, 60)])
np.savetxt(f"{sys.argv[1]}/concrete_cal.csv", rows, delimiter=",")
rows = np.column_stack([rng.integers(0, 17, (60, 64)), rng.integers(0, 10, 60)])
np.savetxt(f"{sys.argv[1]}/digits_cal.csv", rows, delimiter=",", fmt="%d")
PY
for m in concrete digits; do
  "$model_tool" calibrate "$here/../models/$m.safetensors" --data "$tmp/${m}_cal.csv" \
    --out "$tmp/$m.safetensors" --samples 50 --source "made-up rows (monitoring test)" > /dev/null
done

port=$(free_port) mport=$(free_port) pport=$(free_port)
"$server" --model "concrete=$tmp/concrete.safetensors" --model "digits=$tmp/digits.safetensors" \
  --host 127.0.0.1 --port "$port" --metrics_host 127.0.0.1 --metrics_port "$mport" --http_port 0 \
  --adaptive_conformal_rate 0.01 \
  2> "$tmp/server.log" &
pids+=($!)
for _ in $(seq 1 100); do "$client" health --target "127.0.0.1:$port" >/dev/null 2>&1 && break; sleep 0.1; done

# The project's scrape config and rules, pointed at this server, scraping fast.
sed -e "s/mcdrop:9464/127.0.0.1:$mport/" -e "s/scrape_interval: 5s/scrape_interval: 1s/" \
    -e "s/evaluation_interval: 5s/evaluation_interval: 1s/" \
    "$here/prometheus/prometheus.yml" > "$tmp/prometheus.yml"
cp "$here/prometheus/mcdrop.rules.yml" "$tmp/"
prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/data" \
  --web.listen-address="127.0.0.1:$pport" > "$tmp/prometheus.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$pport/-/ready" >/dev/null && break; sleep 0.2; done
curl -sf "http://127.0.0.1:$pport/-/ready" >/dev/null || { cat "$tmp/prometheus.log"; exit 1; }

# Load on both models: regression and classification.
"$client" bench --target "127.0.0.1:$port" --model concrete --concurrency 4 --duration 12s \
  --warmup 0s --samples 100 > "$tmp/bench1.txt" &
b1=$!
"$client" bench --target "127.0.0.1:$port" --model digits --concurrency 2 --duration 12s \
  --warmup 0s --samples 50 --batch_rows 4 > "$tmp/bench2.txt" &
b2=$!
wait "$b1" "$b2"
cat "$tmp/bench1.txt" "$tmp/bench2.txt"
# Feedback: 250 predictions of each model, observed near what was predicted.
PYTHONPATH="$here/../client/python" /usr/bin/python3 - "127.0.0.1:$port" <<'PY'
import sys
import numpy as np
from mcdrop.client import Client
rng = np.random.default_rng(5)
with Client(sys.argv[1]) as c:
    x = np.column_stack([rng.uniform(100, 500, (250, 7)), rng.uniform(1, 100, 250)])
    p = c.predict(x, model="concrete", samples=100)
    y = p.mean[:, 0] + rng.normal(0, 1, 250) * p.std[:, 0]
    accepted, _ = c.feedback("concrete", p.ids, targets=y)
    assert accepted == 250, accepted
    p = c.predict(rng.integers(0, 17, (250, 64)), model="digits", samples=50)
    labels = np.where(rng.uniform(size=250) < 0.8, p.predicted_class, rng.integers(0, 10, 250))
    accepted, _ = c.feedback("digits", p.ids, labels=labels)
    assert accepted == 250, accepted
print("feedback: 250 rows of each model accepted")
PY
sleep 3  # a few more scrapes and rule evaluations

/usr/bin/python3 - "$pport" "$here/grafana/dashboards/mcdrop.json" "$here/prometheus/mcdrop.rules.yml" <<'PY'
import json, re, sys, urllib.parse, urllib.request
import yaml
port, dashboard, rules = sys.argv[1], sys.argv[2], sys.argv[3]
exprs = []
for p in json.load(open(dashboard))["panels"]:
    for t in p.get("targets", []):
        exprs.append(("dashboard: " + p["title"], t["expr"].replace("$model", ".*")))
for g in yaml.safe_load(open(rules))["groups"]:
    for r in g["rules"]:
        e = r["expr"]
        if "alert" in r:
            e = re.sub(r"(>|<)(?!=)\s*", r"\1 bool ", e)
        exprs.append(("rule: " + r.get("record", r.get("alert")), e))
failed = 0
for where, e in exprs:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": e})
    body = json.load(urllib.request.urlopen(url))
    n = len(body["data"]["result"]) if body.get("status") == "success" else 0
    ok = body.get("status") == "success" and n > 0
    failed += not ok
    print(f"{'ok  ' if ok else 'FAIL'} {n:3d} series  {where}")
print(f"{len(exprs) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY
