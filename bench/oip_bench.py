#!/usr/bin/env python3
"""The Open Inference Protocol against mcdrop.v1: starts mcdrop-server (gRPC
and HTTP) on the bundled model and drives it with `mcdrop-client bench` as
mcdrop.v1 Predict, OIP ModelInfer over gRPC, and OIP REST over HTTP with JSON
tensors and with binary tensors, all at the same T, batch and concurrency;
configurations interleaved and repeated; prints a markdown table of medians
and each one's requests/s as a fraction of mcdrop.v1's, measured in the same
repetition (targets: OIP gRPC >= 0.9, HTTP JSON >= 0.5).

  bench/oip_bench.py [--build build] [--repeats 5] [--duration 5s]
                     [--samples 100] [--concurrency 64] [--batch_rows 1]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from serve_bench import free_port

MODES = [("mcdrop.v1 gRPC", ["--api", "mcdrop.v1"]),
         ("OIP gRPC", ["--api", "oip"]),
         ("OIP HTTP JSON", ["--api", "oip", "--protocol", "http"]),
         ("OIP HTTP binary", ["--api", "oip", "--protocol", "http", "--http_binary"])]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--model", default="models/concrete.safetensors")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--duration", default="5s")
    ap.add_argument("--warmup", default="1s")
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--batch_rows", type=int, default=1)
    args = ap.parse_args()
    server_bin = os.path.join(args.build, "server", "mcdrop-server")
    client_bin = os.path.join(args.build, "client", "mcdrop-client")
    port, hport = free_port(), free_port()
    server = subprocess.Popen([server_bin, "--model", args.model, "--host", "127.0.0.1",
                               "--port", str(port), "--http_port", str(hport),
                               "--metrics_port", "0"], stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        results = {name: [] for name, _ in MODES}
        ratios = {name: [] for name, _ in MODES}
        for _ in range(args.repeats):
            rps = {}
            for name, flags in MODES:
                out = subprocess.run(
                    [client_bin, "bench", "--target", f"127.0.0.1:{port}",
                     "--http_target", f"127.0.0.1:{hport}", "--concurrency",
                     str(args.concurrency), "--samples", str(args.samples), "--batch_rows",
                     str(args.batch_rows), "--duration", args.duration, "--warmup", args.warmup,
                     "--json", *flags], check=True, capture_output=True, text=True).stdout
                r = json.loads(out)
                if r["errors"]:
                    sys.exit(f"{name}: {r['errors']} errors: {r['codes']}")
                results[name].append(r)
                rps[name] = r["requests_per_second"]
            for name in rps:
                ratios[name].append(rps[name] / rps["mcdrop.v1 gRPC"])
    finally:
        server.terminate()
        server.wait()
    print(f"T = {args.samples}, {args.batch_rows} row(s) per call, concurrency "
          f"{args.concurrency}, {args.repeats} repetitions of {args.duration} (medians)\n")
    print("| API and transport | requests/s | p50 ms | p99 ms | requests/s vs mcdrop.v1 "
          "(median of per-repetition ratios) |")
    print("| --- | --- | --- | --- | --- |")
    for name, _ in MODES:
        rs = results[name]
        med = lambda f: statistics.median(f(r) for r in rs)  # noqa: E731
        print(f"| {name} | {med(lambda r: r['requests_per_second']):,.0f} | "
              f"{med(lambda r: r['latency_seconds']['p50']) * 1e3:.2f} | "
              f"{med(lambda r: r['latency_seconds']['p99']) * 1e3:.2f} | "
              f"{statistics.median(ratios[name]):.2f} "
              f"({min(ratios[name]):.2f}-{max(ratios[name]):.2f}) |")


if __name__ == "__main__":
    main()
