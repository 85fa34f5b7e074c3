#!/usr/bin/env bash
# Soak test: mcdrop-server under the load generator's maximum closed-loop load
# for a set time. Checks that every call was answered OK (no error of any
# kind), and that the server's resident memory at the end is within 5% of
# what it was after the warm-up. RSS is sampled every second; "after warm-up"
# and "end" are the medians of the first and the last fifth of the samples
# (at most 30 s each), since single readings swing by several per cent with
# the allocator's per-thread caches. The server's live heap
# (mcdrop_heap_in_use_bytes) is sampled with it and reported, so a rise in RSS
# can be told apart: a leak grows the live heap, fragmentation does not.
# Writes a JSON summary to build/soak.json and the samples (time, RSS kB,
# live heap kB) to build/soak-rss.txt.
#   scripts/soak.sh [--duration 600] [--warmup 60] [--concurrency 64]
#                   [--samples 100] [--batch_rows 4] [--model models/concrete.safetensors]
# Needs a built tree (build/); scripts/test.sh runs it with --duration 60.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=600 warmup=60 concurrency=64 samples=100 batch_rows=4 model=models/concrete.safetensors
while [ $# -gt 0 ]; do
  case $1 in
    --duration) duration=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --concurrency) concurrency=$2; shift 2 ;;
    --samples) samples=$2; shift 2 ;;
    --batch_rows) batch_rows=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    *) echo "unknown flag $1"; exit 2 ;;
  esac
done
server=${MCDROP_SERVER:-build/server/mcdrop-server}
client=${MCDROP_CLIENT:-build/client/mcdrop-client}
tmp=$(mktemp -d)
spid=""
cleanup() {
  if [ -n "$spid" ] && kill -0 "$spid" 2>/dev/null; then kill -9 "$spid"; wait "$spid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
mport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
"$server" --model "$model" --host 127.0.0.1 --port "$port" --metrics_host 127.0.0.1 --metrics_port "$mport" \
  --http_port 0 2> "$tmp/server.log" &
spid=$!
target="127.0.0.1:$port"
for _ in $(seq 1 100); do "$client" health --target "$target" --timeout 1s >/dev/null 2>&1 && break; sleep 0.1; done
rss() { awk '/^VmRSS/{print $2}' "/proc/$spid/status"; }
# The live heap (kB) from the server's own gauge: what a leak would grow.
heap() { curl -s --max-time 1 "http://127.0.0.1:$mport/metrics" | awk '/^mcdrop_heap_in_use_bytes /{printf "%d", $2/1024}'; }
bench=("$client" bench --target "$target" --concurrency "$concurrency" --samples "$samples"
       --batch_rows "$batch_rows" --warmup 0s --timeout 30s --json)

echo "soak: warm-up ${warmup}s at concurrency $concurrency, T=$samples, $batch_rows rows per call"
"${bench[@]}" --duration "${warmup}s" > "$tmp/warmup.json"
echo "soak: RSS after warm-up $(rss) kB; load for ${duration}s"
( while kill -0 "$spid" 2>/dev/null; do echo "$(date +%s) $(rss) $(heap)"; sleep 1; done ) > "$tmp/rss.txt" 2>/dev/null &
sampler=$!
set +e
"${bench[@]}" --duration "${duration}s" > "$tmp/soak.json"
bench_rc=$?
set -e
health=$("$client" health --target "$target" --timeout 5s 2>&1 || true)
kill "$sampler" 2>/dev/null || true
# A clean stop after the soak: SIGTERM, exit 0.
kill -TERM "$spid"
set +e
wait "$spid"
stop_rc=$?
set -e
spid=""
mkdir -p build
cp "$tmp/rss.txt" build/soak-rss.txt
python3 - "$tmp/soak.json" build/soak-rss.txt "$bench_rc" "$health" "$duration" "$stop_rc" <<'PY'
import json, statistics, sys
r = json.load(open(sys.argv[1]))
rows = [line.split() for line in open(sys.argv[2])]
rss = [int(r[1]) for r in rows if len(r) >= 2]
heap = [int(r[2]) for r in rows if len(r) == 3]
rc, health, duration, stop_rc = int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
if len(rss) < 6:
    print(f"FAIL: only {len(rss)} RSS samples"); sys.exit(1)
w = max(3, min(30, len(rss) // 5))
start, end, peak = int(statistics.median(rss[:w])), int(statistics.median(rss[-w:])), max(rss)
growth = (end - start) / start
ok = r["codes"].get("OK", 0)
summary = {"duration_s": duration, "concurrency": r["concurrency"], "calls": r["count"], "ok": ok,
           "errors": r["errors"], "codes": r["codes"], "requests_per_second": r["requests_per_second"],
           "passes_per_second": r["passes_per_second"], "p50_s": r["latency_seconds"]["p50"],
           "p99_s": r["latency_seconds"]["p99"], "rss_after_warmup_kb": start, "rss_end_kb": end,
           "rss_peak_kb": peak, "rss_window_samples": w, "rss_growth": round(growth, 4),
           "heap_in_use_first_kb": int(statistics.median(heap[:w])) if heap else None,
           "heap_in_use_last_kb": int(statistics.median(heap[-w:])) if heap else None,
           "health_after": health}
json.dump(summary, open("build/soak.json", "w"), indent=1)
print(json.dumps(summary))
problems = []
if rc != 0: problems.append(f"the load generator exited {rc}")
if r["count"] == 0: problems.append("no calls")
if r["errors"] != 0 or ok != r["count"]: problems.append(f"{r['errors']} failed calls: {r['codes']}")
if growth >= 0.05: problems.append(f"RSS grew {growth:.1%} (limit 5%)")
if health != "SERVING": problems.append(f"health after the soak: {health}")
if stop_rc != 0: problems.append(f"the server exited {stop_rc} on SIGTERM after the soak")
if problems:
    print("FAIL: " + "; ".join(problems)); sys.exit(1)
print(f"soak: ok: {r['count']} calls in {duration} s ({r['requests_per_second']:.0f}/s), 0 errors, "
      f"RSS median of first/last {w} s {start} -> {end} kB ({growth:+.2%}), peak {peak} kB")
PY
