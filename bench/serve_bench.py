#!/usr/bin/env python3
"""End-to-end serving benchmark: starts mcdrop-server on the bundled model,
drives it with `mcdrop-client bench` (Predict at several T, and the
grpc.health.v1 Check baseline) at concurrency 1, 8 and 64, repeats every
configuration (interleaved, so slow phases of a shared machine hit all
alike), and prints a markdown table of medians plus the ratios of the targets.

  bench/serve_bench.py [--build build] [--repeats 3] [--duration 4s]
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--model", default="models/concrete.safetensors")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--duration", default="4s")
    ap.add_argument("--warmup", default="1s")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--server_flag", action="append", default=[],
                    help="extra mcdrop-server flag, e.g. --server_flag=--precision=bf16")
    args = ap.parse_args()
    server_bin = os.path.join(args.build, "server", "mcdrop-server")
    client_bin = os.path.join(args.build, "client", "mcdrop-client")
    port = free_port()
    target = f"127.0.0.1:{port}"
    server = subprocess.Popen([server_bin, "--model", args.model, "--host", "127.0.0.1",
                               "--port", str(port), "--metrics_port", "0", "--http_port", "0",
                               "--threads", str(args.threads)] + args.server_flag,
                              stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if subprocess.run([client_bin, "health", "--target", target, "--timeout", "1s"],
                              capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        configs = [("health", 0, c) for c in (1, 8, 64)]
        configs += [("predict", t, c) for t in (100, 1000, 10000) for c in (1, 8, 64)]
        results = {cfg: [] for cfg in configs}
        for rep in range(args.repeats):
            for rpc, t, c in configs:
                cmd = [client_bin, "bench", "--target", target, "--rpc", rpc,
                       "--concurrency", str(c), "--duration", args.duration,
                       "--warmup", args.warmup, "--json"]
                if rpc == "predict":
                    cmd += ["--samples", str(t), "--batch_rows", "1"]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
                results[(rpc, t, c)].append(json.loads(out))
                print(f"rep {rep} {rpc} T={t} c={c}: {results[(rpc, t, c)][-1]['requests_per_second']:.0f}/s",
                      file=sys.stderr)
    finally:
        server.terminate()
        server.wait()

    def med(cfg, key, sub=None):
        vals = [r[key][sub] if sub else r[key] for r in results[cfg]]
        return statistics.median(vals)

    print(f"mcdrop-server --threads {args.threads or os.cpu_count()} on {os.cpu_count()} CPUs, "
          f"model {args.model}, B = 1, {args.repeats} repetitions of {args.duration} "
          f"(+{args.warmup} warm-up) each, medians; client and server share the machine."
          + (f" Server flags: {' '.join(args.server_flag)}." if args.server_flag else ""))
    print()
    print("| RPC | T | concurrency | requests/s | passes/s | p50 ms | p90 ms | p99 ms | p99.9 ms | errors |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for cfg in configs:
        rpc, t, c = cfg
        print(f"| {'Predict' if rpc == 'predict' else 'Health/Check'} | {t or '-'} | {c} | "
              f"{med(cfg, 'requests_per_second'):.0f} | "
              f"{med(cfg, 'passes_per_second'):.3g} | "
              f"{med(cfg, 'latency_seconds', 'p50') * 1e3:.3f} | "
              f"{med(cfg, 'latency_seconds', 'p90') * 1e3:.3f} | "
              f"{med(cfg, 'latency_seconds', 'p99') * 1e3:.3f} | "
              f"{med(cfg, 'latency_seconds', 'p999') * 1e3:.3f} | "
              f"{sum(r['errors'] for r in results[cfg])} |")
    print()
    ratio = med(("predict", 100, 64), "requests_per_second") / med(("health", 0, 64), "requests_per_second")
    p50 = med(("predict", 100, 1), "latency_seconds", "p50") / med(("health", 0, 1), "latency_seconds", "p50")
    print(f"- concurrency 64: Predict (T = 100) reaches {ratio:.0%} of the health check's requests/s "
          f"(target >= 60%): {'met' if ratio >= 0.6 else 'NOT met'}")
    print(f"- concurrency 1: Predict (T = 100) p50 is {p50:.2f}x the health check's "
          f"(target <= 1.3x): {'met' if p50 <= 1.3 else 'NOT met'}")


if __name__ == "__main__":
    main()
