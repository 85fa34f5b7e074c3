#!/usr/bin/env bash
# Builds the Docker image from the top-level Dockerfile with buildah (these
# machines have no Docker engine and reach no registry: the debian base image
# is made locally with debootstrap and imported into podman), starts
# mcdrop-server from the image, and checks from the host: health SERVING, the
# image's HEALTHCHECK command, a Predict answer equal to the host build's for
# the same seed, a metrics scrape, the non-root user, and the image config
# (ENTRYPOINT, CMD, USER, ports, health check) naming what exists.
#   deploy/test-image.sh HOST_MCDROP_SERVER HOST_MCDROP_CLIENT
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
host_server=$1 client=$2
image=${MCDROP_IMAGE:-mcdrop:test}
tmp=$(mktemp -d)
pids=()
container=""
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "$container" ] && buildah rm "$container" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# Tools and the local base image (made once, kept between runs).
need=()
for t in buildah podman debootstrap; do command -v "$t" >/dev/null || need+=("$t"); done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah podman debootstrap >/dev/null
fi
if ! podman image exists docker.io/library/debian:bookworm-slim; then
  mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources | head -n1)
  rm -rf /var/tmp/rootfs
  debootstrap --variant=minbase bookworm /var/tmp/rootfs "$mirror" > "$tmp/debootstrap.log"
  tar -C /var/tmp/rootfs -c . | podman import - docker.io/library/debian:bookworm-slim >/dev/null
  podman tag docker.io/library/debian:bookworm-slim docker.io/library/debian:bookworm
fi

start=$(date +%s)
# Docker format: the OCI format has no HEALTHCHECK.
buildah bud --isolation chroot --pull=never --layers --format docker -t "$image" "$top" > "$tmp/build.log" 2>&1 \
  || { tail -50 "$tmp/build.log"; exit 1; }
echo "ok: image built in $(( $(date +%s) - start )) s, $(podman image inspect "$image" --format '{{.Size}}' | awk '{printf "%.1f MB", $1/1e6}')"

# The config names what the image holds.
buildah inspect --type image "$image" > "$tmp/inspect.json"
/usr/bin/python3 - "$tmp/inspect.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
c = d["OCIv1"]["config"]
assert c["Entrypoint"] == ["mcdrop-server"], c["Entrypoint"]
assert "--model" in c["Cmd"] and "/models/concrete.safetensors" in c["Cmd"], c["Cmd"]
assert c["User"] == "10001:10001", c.get("User")
assert set(c["ExposedPorts"]) == {"50051/tcp", "8000/tcp", "9464/tcp"}, c["ExposedPorts"]
hc = d["Docker"]["config"].get("Healthcheck") or {}
assert hc.get("Test", [])[:4] == ["CMD", "mcdrop-client", "health", "--target"], hc
print("ok: image config", c["Entrypoint"], c["User"], sorted(c["ExposedPorts"]), "HEALTHCHECK", hc["Test"][1:])
PY
container=$(buildah from "$image")
for f in /usr/local/bin/mcdrop-server /usr/local/bin/mcdrop-client /models/concrete.safetensors /models/digits.safetensors; do
  buildah run --isolation chroot "$container" -- test -e "$f" || { echo "FAIL: $f missing"; exit 1; }
done
buildah run --isolation chroot --user 10001:10001 "$container" -- mcdrop-model info /models/digits.safetensors | grep -q "classification"
echo "ok: binaries and models present; they run as uid 10001"

# The server from the image (it shares the host's network), and the same
# models served by the host build.
port=$(free_port) mport=$(free_port) hport=$(free_port) http=$(free_port) host_http=$(free_port)
buildah run --isolation chroot --user 10001:10001 "$container" -- mcdrop-server \
  --model /models/concrete.safetensors --model /models/digits.safetensors \
  --host 127.0.0.1 --port "$port" --metrics_host 127.0.0.1 --metrics_port "$mport" --http_port "$http" \
  > "$tmp/image-server.log" 2>&1 &
pids+=($!)
"$host_server" --model "$top/models/concrete.safetensors" --model "$top/models/digits.safetensors" \
  --host 127.0.0.1 --port "$hport" --metrics_port 0 --http_port "$host_http" 2> "$tmp/host-server.log" &
pids+=($!)
for _ in $(seq 1 150); do "$client" health --target "127.0.0.1:$port" >/dev/null 2>&1 && break; sleep 0.2; done
"$client" health --target "127.0.0.1:$port" | grep -qx SERVING || { cat "$tmp/image-server.log"; exit 1; }
echo "ok: health SERVING (from the host)"
buildah run --isolation chroot --user 10001:10001 "$container" -- \
  mcdrop-client health --target "localhost:$port" --timeout 2s | grep -qx SERVING
echo "ok: the HEALTHCHECK command works inside the image"
for _ in $(seq 1 100); do "$client" health --target "127.0.0.1:$hport" >/dev/null 2>&1 && break; sleep 0.1; done
rows="540,0,0,162,2.5,1040,676,28;332.5,142.5,0,228,0,932,594,270"
"$client" predict --target "127.0.0.1:$port" --model concrete --input "$rows" --samples 1000 \
  --seed 42 --intervals 0.9 --csv > "$tmp/image.csv"
"$client" predict --target "127.0.0.1:$hport" --model concrete --input "$rows" --samples 1000 \
  --seed 42 --intervals 0.9 --csv > "$tmp/host.csv"
cat "$tmp/image.csv"
cmp "$tmp/image.csv" "$tmp/host.csv" || { echo "FAIL: the image and the host build differ"; cat "$tmp/host.csv"; exit 1; }
echo "ok: Predict from the image equals the host build's (seed 42, T = 1000)"
body='{"parameters": {"samples": 1000, "seed": 42}, "inputs": [{"name": "input", "shape": [1, 8], "datatype": "FP32", "data": [540, 0, 0, 162, 2.5, 1040, 676, 28]}]}'
curl -sf "http://127.0.0.1:$http/v2/health/ready" > /dev/null
curl -sf "http://127.0.0.1:$http/v2/models/concrete/infer" -d "$body" > "$tmp/image-http.json"
curl -sf "http://127.0.0.1:$host_http/v2/models/concrete/infer" -d "$body" > "$tmp/host-http.json"
# Equal but for the prediction ids, which every server draws for itself.
/usr/bin/python3 - "$tmp/image-http.json" "$tmp/host-http.json" <<'PY' || { echo "FAIL: HTTP answers differ"; cat "$tmp/image-http.json" "$tmp/host-http.json"; exit 1; }
import json, re, sys
docs = [json.load(open(p)) for p in sys.argv[1:]]
for d in docs:
    assert re.fullmatch(r"[0-9a-f]{12}-[0-9a-f]{16}", d["parameters"].pop("prediction_id")), d
assert docs[0] == docs[1], docs
PY
echo "ok: the image's HTTP/REST (Open Inference Protocol) answer equals the host build's"
curl -sf "http://127.0.0.1:$mport/metrics" > "$tmp/metrics.txt"
grep -q 'mcdrop_requests_total{api="mcdrop.v1",code="OK",model="concrete",protocol="grpc"} 1' "$tmp/metrics.txt"
grep -q 'mcdrop_model_info{model="digits"' "$tmp/metrics.txt"
echo "ok: metrics scraped from the image's server"
