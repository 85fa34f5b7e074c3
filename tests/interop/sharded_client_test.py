#!/usr/bin/python3
"""One request over several servers, from Python (client/python/mcdrop/sharded.py)
and from mcdrop-client predict --replicas: the merged answer equals one
server's bit for bit (regression and classification, uneven ranges); a range
on a replica that is down, or that is killed mid-request, is retried on
another; what cannot be merged is refused.
  sharded_client_test.py MCDROP_SERVER MCDROP_CLIENT MODELS_DIR"""
import json
import signal
import subprocess
import sys
import threading
import time

import grpc
import numpy as np

from checks import check, finish, free_port, wait_for_port
from mcdrop import Client
from mcdrop.sharded import ShardedClient, merge_ranges, split_passes
from mcdrop.v1 import inference_pb2

server_bin, client_bin, models = sys.argv[1:4]


def start():
    port = free_port()
    p = subprocess.Popen([server_bin, "--model", f"{models}/concrete.safetensors",
                          "--model", f"{models}/digits.safetensors", "--host", "127.0.0.1",
                          "--port", str(port), "--metrics_port", "0", "--http_port", "0",
                          "--threads", "1", "--max_samples", "1000000"],
                         stderr=subprocess.DEVNULL)
    wait_for_port(port)
    return p, f"127.0.0.1:{port}"


def same(got, want):
    """Equal serialised responses, server times and ids aside."""
    for r in (got, want):
        r.queue_seconds = r.compute_seconds = 0
        r.prediction_id = ""
        for row in r.rows:
            row.id = ""
    return got.SerializeToString(deterministic=True) == want.SerializeToString(deterministic=True)


servers = [start() for _ in range(3)]
targets = [t for _, t in servers]
try:
    single = Client(targets[0])
    x = np.array([[540, 0, 0, 162, 2.5, 1040, 676, 28], [332.5, 142.5, 0, 228, 0, 932, 594, 270]],
                 np.float32)

    def one_server(model, xs, T, seed, **kw):
        req = inference_pb2.PredictRequest(model=model, shape=list(xs.shape),
                                           inputs=xs.ravel().tolist(), samples=T, seed=seed, **kw)
        return single._stub.Predict(req, timeout=60)

    fleet = ShardedClient(targets)
    want = one_server("concrete", x, 5000, 11)
    for kw in ({}, {"ranges": 5}, {"ends": [256, 3840, 5000]}, {"ends": [4864, 5000]}):
        p = fleet.predict(x, model="concrete", samples=5000, seed=11, **kw)
        check(f"regression, ranges {kw or 'one per replica'}: one server's bits",
              same(fleet.response, want), fleet.response)
        check("arrays", np.array_equal(p.mean[:, 0], [r.outputs[0].mean for r in want.rows]))
    check("each range in one call", all(r["attempts"] == 1 for r in fleet.report), fleet.report)

    d = (np.arange(128) % 17).astype(np.float32).reshape(2, 64)
    want = one_server("digits", d, 3000, 5, return_samples=True)
    p = fleet.predict(d, model="digits", samples=3000, seed=5, ends=[512, 1024, 3000],
                      return_samples=True)
    check("classification, uneven ranges, with the samples: one server's bits",
          same(fleet.response, want))
    check("classification arrays", p.samples.shape == (3000, 2, 10)
          and np.array_equal(p.entropy, [r.classification.entropy for r in want.rows]))

    # The command line's merge (C++) gives the same answer.
    out = subprocess.run([client_bin, "predict", "--replicas", ",".join(targets), "--model", "concrete",
                          "--input", "540,0,0,162,2.5,1040,676,28;332.5,142.5,0,228,0,932,594,270",
                          "--samples", "5000", "--seed", "11", "--ranges", "4", "--json"],
                         capture_output=True, text=True, check=True)
    cli = json.loads(out.stdout)
    want = one_server("concrete", x, 5000, 11)
    check("mcdrop-client predict --replicas: one server's means",
          [r["outputs"][0]["mean"] for r in cli["rows"]] == [r.outputs[0].mean for r in want.rows],
          cli)
    check("mcdrop-client reports each range", out.stderr.count("passes [") == 4, out.stderr)

    # The deployment's service config (round robin, health checking,
    # retries) from the Python client, over every replica in one channel.
    import os
    config = open(os.path.join(os.path.dirname(__file__), "..", "..", "deploy",
                               "grpc-service-config.json")).read()
    balanced = Client("ipv4:" + ",".join(targets), service_config=config, keepalive_ms=1000)
    p = balanced.predict(x, model="concrete", samples=5000, seed=11)
    check("Client with the deployment's service config", np.array_equal(
        p.mean[:, 0], [r.outputs[0].mean for r in one_server("concrete", x, 5000, 11).rows]))

    # A replica that is down: its range goes to the next.
    down = ShardedClient([targets[0], f"127.0.0.1:{free_port()}", targets[2]])
    want = one_server("concrete", x, 3000, 3)
    down.predict(x, model="concrete", samples=3000, seed=3, ranges=3)
    check("a replica down: same bits", same(down.response, want))
    check("a replica down: its range retried once", down.report[1]["attempts"] == 2
          and down.report[1]["replica"] == 2, down.report)

    # A replica killed (SIGKILL) while it computes its range.
    victim = servers[1][0]
    big = ShardedClient(targets)
    T = 600000
    killer = threading.Timer(0.15, victim.send_signal, (signal.SIGKILL,))
    killer.start()
    started = time.monotonic()
    p = big.predict(d, model="digits", samples=T, seed=9, ranges=3)
    killer.join()
    check("the victim died during the call", victim.poll() is not None)
    want = one_server("digits", d, T, 9)
    check("a replica killed mid-request: same bits", same(big.response, want))
    check("a replica killed mid-request: its range retried", big.report[1]["attempts"] == 2,
          big.report)
    print(f"killed mid-request: {time.monotonic() - started:.2f} s, report {big.report}")

    # Refusals.
    try:
        fleet.predict(x, model="concrete", samples=1000, ends=[300, 1000])
        check("ends off the leaf grid are refused", False)
    except ValueError as e:
        check("ends off the leaf grid are refused", "multiples of 256" in str(e), e)
    try:
        bad = inference_pb2.PredictRequest(model="concrete", shape=[1, 8], inputs=list(x[0]),
                                           samples=1000, seed=1)
        bad.sample_range.begin, bad.sample_range.end = 100, 512
        single._stub.Predict(bad, timeout=10)
        check("the server refuses a range off the grid", False)
    except grpc.RpcError as e:
        check("the server refuses a range off the grid",
              e.code() == grpc.StatusCode.INVALID_ARGUMENT and "multiples of 256" in e.details(),
              e.details())
    check("split_passes", split_passes(1000000, 4) == [249856, 499968, 750080, 1000000])
    r0 = one_server("concrete", x, 300, 1)
    try:
        merge_ranges(inference_pb2.PredictRequest(samples=300), [r0])
        check("an answer without statistics is not merged", False)
    except ValueError as e:
        check("an answer without statistics is not merged", "no pass statistics" in str(e), e)
finally:
    for p, _ in servers:
        if p.poll() is None:
            p.terminate()
            p.wait()
finish()
