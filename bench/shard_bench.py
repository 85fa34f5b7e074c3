#!/usr/bin/python3
"""One request of T = 1,000,000 passes spread over N replicas on this machine
(docs/performance.md, "One request over many servers").

  PYTHONPATH=client/python bench/shard_bench.py build/server/mcdrop-server models \
      [--samples 1000000] [--repeats 7] [--networks concrete,digits] [--json out.json]

For each model: one server with every core (--threads = cores) answering the
whole request alone (plain Predict); then N = 1, 2, 4 replicas (--threads 1
each, so N = cores uses every core once and N > cores shares them), the
request cut into N ranges by mcdrop.sharded.ShardedClient; and, for N
machines like this one, the time one server with every core takes for its
T / N range alone (what each machine would do) plus the client's merge.
Medians over --repeats after a warm-up call; one row of the inputs.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "interop"))
from checks import free_port, wait_for_port  # noqa: E402
from mcdrop import Client  # noqa: E402
from mcdrop.sharded import ShardedClient, merge_ranges, split_passes  # noqa: E402
from mcdrop.v1 import inference_pb2  # noqa: E402

INPUTS = {"concrete": np.array([[540, 0, 0, 162, 2.5, 1040, 676, 28]], np.float32),
          "digits": (np.arange(64) % 17).astype(np.float32)[None]}


def start(server, models, threads, max_samples):
    port = free_port()
    p = subprocess.Popen([server, "--model", f"{models}/concrete.safetensors",
                          "--model", f"{models}/digits.safetensors", "--host", "127.0.0.1",
                          "--port", str(port), "--metrics_port", "0", "--http_port", "0",
                          "--threads", str(threads), "--max_samples", str(max_samples),
                          "--feedback_store_mb", "0"],
                         stderr=subprocess.DEVNULL)
    wait_for_port(port)
    return p, f"127.0.0.1:{port}"


def median_seconds(fn, repeats):
    fn()  # warm-up: kernels made, connections up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("server")
    ap.add_argument("models")
    ap.add_argument("--samples", type=int, default=1000000)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--networks", default="concrete,digits")
    ap.add_argument("--json")
    a = ap.parse_args()
    cores = os.cpu_count()
    T = a.samples
    out = {"samples": T, "cores": cores, "repeats": a.repeats, "models": {}}
    for model in a.networks.split(","):
        x = INPUTS[model]
        res = out["models"][model] = {}
        # One server, every core, the whole request.
        p, target = start(a.server, a.models, cores, T)
        c = Client(target)
        res["one_server"] = median_seconds(
            lambda: c.predict(x, model=model, samples=T, seed=7), a.repeats)[0]
        # N machines like this one: one range of T / N on every core, alone.
        req = inference_pb2.PredictRequest(model=model, shape=list(x.shape),
                                           inputs=x.ravel().tolist(), samples=T, seed=7)
        res["per_machine_range"] = {}
        for n in (1, 2, 4, 8, 16):
            end = split_passes(T, n)[0]
            r = inference_pb2.PredictRequest()
            r.CopyFrom(req)
            r.sample_range.begin, r.sample_range.end = 0, end
            res["per_machine_range"][n] = median_seconds(
                lambda: c._stub.Predict(r, timeout=600), a.repeats)[0]
        # The client's merge of N ranges (statistics from this server).
        res["merge"] = {}
        for n in (1, 2, 4, 8, 16):
            ends = split_passes(T, n)
            answers = []
            for b, e in zip([0] + ends[:-1], ends):
                r = inference_pb2.PredictRequest()
                r.CopyFrom(req)
                r.sample_range.begin, r.sample_range.end = b, e
                answers.append(c._stub.Predict(r, timeout=600))
            res["merge"][n] = median_seconds(lambda: merge_ranges(req, answers), a.repeats)[0]
        c.close()
        p.terminate()
        p.wait()
        # N replicas on this machine, one thread each.
        res["replicas"] = {}
        for n in (1, 2, 4):
            procs = [start(a.server, a.models, 1, T) for _ in range(n)]
            fleet = ShardedClient([t for _, t in procs], timeout=600)
            res["replicas"][n] = median_seconds(
                lambda: fleet.predict(x, model=model, samples=T, seed=7), a.repeats)[0]
            fleet.close()
            for q, _ in procs:
                q.terminate()
                q.wait()
        print(f"{model}: one server ({cores} threads) {res['one_server']:.3f} s; replicas "
              + ", ".join(f"N={n} {s:.3f} s" for n, s in res["replicas"].items())
              + "; per machine range "
              + ", ".join(f"N={n} {s:.3f} s" for n, s in res["per_machine_range"].items())
              + "; merge " + ", ".join(f"N={n} {s * 1e3:.2f} ms" for n, s in res["merge"].items()),
              flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
