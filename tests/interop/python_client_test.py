#!/usr/bin/python3
"""The Python client (client/python/mcdrop) against a live mcdrop-server:
health, models, metadata, regression and classification predictions as NumPy
arrays equal to what mcdrop-client gets for the same seed, and errors; then
against a server with mutual TLS and a bearer token (certificates made by
tests/testing/make_certs.sh).
  python_client_test.py MCDROP_SERVER MCDROP_CLIENT MODELS_DIR"""
import json
import os
import subprocess
import sys
import tempfile
import time

import grpc
import numpy as np

import mcdrop
from checks import check, failures, finish, free_port, wait_for_port

server_bin, client_bin, models = sys.argv[1:4]
port = free_port()
server = subprocess.Popen([server_bin, "--model", f"{models}/concrete.safetensors",
                           "--model", f"{models}/digits.safetensors", "--host", "127.0.0.1",
                           "--port", str(port), "--metrics_port", "0", "--http_port", "0"], stderr=subprocess.DEVNULL)


try:
    target = f"127.0.0.1:{port}"
    c = mcdrop.Client(target)
    for _ in range(100):
        try:
            if c.health() == "SERVING":
                break
        except grpc.RpcError:
            pass
        time.sleep(0.1)
    check("health", c.health() == "SERVING")
    check("health of the service", c.health("mcdrop.v1.Inference") == "SERVING")
    names = [m["name"] for m in c.models()]
    check("models", names == ["concrete", "digits"], names)
    meta = c.metadata("concrete")
    check("metadata", meta["layer_sizes"] == [8, 50, 1] and meta["task"] == "REGRESSION", meta)

    x = np.array([[540, 0, 0, 162, 2.5, 1040, 676, 28], [332.5, 142.5, 0, 228, 0, 932, 594, 270]])
    p = c.predict(x, model="concrete", samples=500, seed=11, intervals=(0.9,), return_samples=True)
    out = subprocess.run([client_bin, "predict", "--target", target, "--model", "concrete",
                          "--input", "540,0,0,162,2.5,1040,676,28;332.5,142.5,0,228,0,932,594,270",
                          "--samples", "500", "--seed", "11", "--intervals", "0.9", "--json"],
                         capture_output=True, text=True, check=True).stdout
    ref = json.loads(out)
    ref_mean = np.array([[o["mean"] for o in r["outputs"]] for r in ref["rows"]])
    ref_var = np.array([[o["variance"] for o in r["outputs"]] for r in ref["rows"]])
    check("regression shapes", p.mean.shape == (2, 1) and p.samples.shape == (500, 2, 1))
    check("mean equals mcdrop-client's for the seed", np.array_equal(p.mean, ref_mean), (p.mean, ref_mean))
    check("variance equals mcdrop-client's", np.array_equal(p.variance, ref_var))
    check("std", np.allclose(p.std, np.sqrt(p.variance)))
    lo, hi = p.intervals[0.9]
    check("intervals bracket the mean", bool(np.all(lo < p.mean) and np.all(p.mean < hi)))
    check("mean of the returned samples", np.allclose(p.samples.mean(0), p.mean, rtol=1e-5))
    check("seed echoed", p.seed == 11 and p.samples_used == 500)
    d = c.predict(x, model="concrete", deterministic=True)
    check("deterministic: one pass, no model variance", d.samples_used == 1 and np.all(d.model_variance == 0))
    check("row ids", len(p.ids) == len(x) and all(i == f"{p.prediction_id}:{r}" for r, i in enumerate(p.ids)))
    accepted, results = c.feedback("concrete", p.ids, targets=p.mean[:, 0])
    check("feedback accepted", accepted == len(x), results)
    accepted, results = c.feedback("concrete", p.ids, targets=p.mean[:, 0])
    check("feedback twice: duplicates, reported not raised",
          accepted == 0 and {r[1] for r in results} == {"DUPLICATE"}, results)
    check("no ids in deterministic mode", d.prediction_id == "" and d.ids == ["", ""][:len(x)])

    digits = np.zeros((2, 64))
    digits[1] = [0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0, 0, 3, 15, 2, 0, 11, 8, 0, 0, 4, 12, 0, 0,
                 8, 8, 0, 0, 5, 8, 0, 0, 9, 8, 0, 0, 4, 11, 0, 1, 12, 7, 0, 0, 2, 14, 5, 10, 12, 0, 0, 0, 0, 6,
                 13, 10, 0, 0, 0]
    q = c.predict(digits, model="digits", samples=100, seed=3)
    check("classification arrays", q.probabilities.shape == (2, 10) and q.predicted_class.shape == (2,))
    check("probabilities sum to 1", np.allclose(q.probabilities.sum(1), 1.0))
    check("a clear 0 is a confident 0", q.predicted_class[1] == 0 and q.mutual_information[1] < 0.05)
    check("a blank image is uncertain", q.mutual_information[0] > 0.3, q.mutual_information)

    try:
        c.predict(np.zeros((1, 3)), model="concrete")
        check("bad width raises", False)
    except grpc.RpcError as e:
        check("bad width raises INVALID_ARGUMENT", e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.details())
    try:
        c.predict(x, model="nope")
        check("unknown model raises", False)
    except grpc.RpcError as e:
        check("unknown model raises NOT_FOUND", e.code() == grpc.StatusCode.NOT_FOUND)
finally:
    server.terminate()
    server.wait()

with tempfile.TemporaryDirectory() as tmp:
    here = os.path.dirname(os.path.abspath(__file__))
    subprocess.run(["bash", os.path.join(here, "..", "testing", "make_certs.sh"), tmp], check=True)
    with open(f"{tmp}/tokens", "w") as f:
        f.write("python-test-token\n")
    port = free_port()
    server = subprocess.Popen([server_bin, "--model", f"{models}/concrete.safetensors", "--host", "127.0.0.1",
                               "--port", str(port), "--metrics_port", "0", "--http_port", "0",
                               "--tls_cert", f"{tmp}/server.crt", "--tls_key", f"{tmp}/server.key",
                               "--tls_client_ca", f"{tmp}/ca.crt", "--auth_token_file", f"{tmp}/tokens"],
                              stderr=open(f"{tmp}/server.log", "w"))
    try:
        target = f"127.0.0.1:{port}"
        wait_for_port(port)
        creds = dict(tls_ca=f"{tmp}/ca.crt", tls_cert=f"{tmp}/client.crt", tls_key=f"{tmp}/client.key")
        secure = mcdrop.Client(target, timeout=5, auth_token="python-test-token", **creds)
        check("mutual TLS: health", secure.health() == "SERVING")
        x = np.array([[540, 0, 0, 162, 2.5, 1040, 676, 28]])
        p = secure.predict(x, samples=50, seed=1)
        check("mutual TLS + token: predict", p.mean.shape == (1, 1))
        check("mutual TLS + token: models", [m["name"] for m in secure.models()] == ["concrete"])
        no_token = mcdrop.Client(target, timeout=5, **creds)
        check("mutual TLS, no token: health open", no_token.health() == "SERVING")
        try:
            no_token.predict(x)
            check("no token refused", False)
        except grpc.RpcError as e:
            check("no token: UNAUTHENTICATED", e.code() == grpc.StatusCode.UNAUTHENTICATED, e.details())
        no_cert = mcdrop.Client(target, timeout=5, tls_ca=f"{tmp}/ca.crt", auth_token="python-test-token")
        try:
            no_cert.predict(x)
            check("no client certificate refused", False)
        except grpc.RpcError as e:
            check("no client certificate: UNAVAILABLE", e.code() == grpc.StatusCode.UNAVAILABLE, e.code())
    finally:
        server.terminate()
        server.wait()
        if failures() or sys.exc_info()[0] is not None:
            print("server log:\n" + open(f"{tmp}/server.log").read())
finish()
