#!/usr/bin/env bash
# Replicas, failover and rolling updates, verified for real: N mcdrop-server
# replicas on loopback ports, HAProxy in front, and under load from
# `mcdrop-client bench --concurrency 64` one replica killed (SIGKILL),
# drained (SIGTERM), restarted and stopped (SIGSTOP), through client-side
# balancing (round robin, gRPC health checking, retries) and through the
# proxy (gRPC and the HTTP/REST API). Prints the figures and exits 1 when a
# target is missed (docs/deploy.md, docs/reliability.md). CI runs --short.
#   deploy/test-fleet.sh MCDROP_SERVER MCDROP_CLIENT [--short|--full]
#       [--route grpc,proxy,http] [--fault kill,drain,restart,stop] [--json OUT]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if ! command -v haproxy >/dev/null && [ ! -x /usr/sbin/haproxy ]; then
  echo "test-fleet: haproxy is missing (scripts/install-deps.sh installs it)" >&2
  exit 1
fi
exec /usr/bin/python3 "$here/fleet.py" "$@"
