"""An Open Inference Protocol client written from the specification, against a
live mcdrop-server: gRPC through stubs generated from the project's OIP proto
(inference.GRPCInferenceService), HTTP/REST through the standard library
(http.client, json), nothing from mcdrop's own clients. Every endpoint,
typed and raw inputs, the binary tensor extension, every output and
parameter, every error; the same seed gives the same numbers through
mcdrop.v1, OIP gRPC and OIP HTTP; bearer tokens, TLS and a drain on SIGTERM
over HTTP.
    oip_client_test.py SERVER_BIN MODELS_DIR CERT_SCRIPT"""
import http.client
import json
import re
import os
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time

import grpc
import numpy as np

from mcdrop.inference import open_inference_grpc_pb2 as pb
from mcdrop.inference import open_inference_grpc_pb2_grpc as pb_grpc
from mcdrop.v1 import inference_pb2 as v1
from mcdrop.v1 import inference_pb2_grpc as v1_grpc

SERVER, MODELS, CERTS = sys.argv[1], sys.argv[2], sys.argv[3]
CONCRETE = [540, 0, 0, 162, 2.5, 1040, 676, 28]
ZERO = [0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0, 0, 3, 15, 2, 0, 11, 8, 0, 0, 4,
        12, 0, 0, 8, 8, 0, 0, 5, 8, 0, 0, 9, 8, 0, 0, 4, 11, 0, 1, 12, 7, 0, 0, 2, 14, 5, 10,
        12, 0, 0, 0, 0, 6, 13, 10, 0, 0, 0]
failures = []
checks = [0]


def check(cond, what):
    checks[0] += 1
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def start(extra=()):
    port, hport = free_port(), free_port()
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([SERVER, "--model", f"concrete={MODELS}/concrete.safetensors",
                             "--model", f"digits={MODELS}/digits.safetensors",
                             "--host", "127.0.0.1", "--port", str(port), "--http_port", str(hport),
                             "--metrics_port", "0", "--threads", "2", *extra], stderr=log)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", hport), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    return proc, port, hport


def http_call(hport, method, path, body=None, headers=None, context=None):
    conn = (http.client.HTTPSConnection("localhost", hport, context=context, timeout=30)
            if context else http.client.HTTPConnection("127.0.0.1", hport, timeout=30))
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, dict((k.lower(), v) for k, v in r.getheaders()), data


def http_infer(hport, model, req, binary=b"", headers=None):
    head = json.dumps(req).encode()
    h = dict(headers or {})
    if binary:
        h["Inference-Header-Content-Length"] = str(len(head))
    status, rh, data = http_call(hport, "POST", f"/v2/models/{model}/infer", head + binary, h)
    n = int(rh.get("inference-header-content-length", len(data)))
    doc = json.loads(data[:n])
    return status, doc, data[n:]


def decode_http(doc, tail):
    """Outputs by name as arrays, JSON or binary, per the specification."""
    types = {"FP64": "<f8", "FP32": "<f4", "INT64": "<i8"}
    out, offset = {}, 0
    for o in doc["outputs"]:
        size = o.get("parameters", {}).get("binary_data_size")
        if size is not None:
            a = np.frombuffer(tail[offset:offset + size], dtype=types[o["datatype"]])
            offset += size
        else:
            a = np.array(o["data"], dtype=types[o["datatype"]])
        out[o["name"]] = a.reshape(o["shape"])
    check(offset == len(tail), "every binary byte belongs to an output")
    return out


def decode_grpc(resp):
    types = {"FP64": "<f8", "FP32": "<f4", "INT64": "<i8"}
    check(len(resp.raw_output_contents) == len(resp.outputs), "one raw content per output")
    return {o.name: np.frombuffer(raw, dtype=types[o.datatype]).reshape(list(o.shape))
            for o, raw in zip(resp.outputs, resp.raw_output_contents)}


def grpc_request(model, values, shape, datatype="FP32", raw=True, params=None, outputs=()):
    r = pb.ModelInferRequest(model_name=model, id="req-1")
    t = r.inputs.add(name="input", datatype=datatype, shape=shape)
    x = np.array(values, dtype=np.float64)
    if raw:
        fmt = {"FP32": "<f4", "FP64": "<f8", "FP16": "<f2"}
        if datatype == "BF16":
            b = (x.astype("<f4").view("<u4") >> 16).astype("<u2").tobytes()
        else:
            b = x.astype(fmt[datatype]).tobytes()
        r.raw_input_contents.append(b)
    elif datatype == "FP32":
        t.contents.fp32_contents.extend(x.tolist())
    else:
        t.contents.fp64_contents.extend(x.tolist())
    for k, v in (params or {}).items():
        p = r.parameters[k]
        if isinstance(v, bool):
            p.bool_param = v
        elif isinstance(v, int):
            p.int64_param = v
        elif isinstance(v, float):
            p.double_param = v
        else:
            p.string_param = v
    for o in outputs:
        r.outputs.add(name=o)
    return r


def run_grpc(stub, req, metadata=()):
    try:
        return stub.ModelInfer(req, timeout=30, metadata=metadata), None
    except grpc.RpcError as e:
        return None, e


def test_endpoints(port, hport):
    stub = pb_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
    check(stub.ServerLive(pb.ServerLiveRequest()).live, "gRPC ServerLive")
    check(stub.ServerReady(pb.ServerReadyRequest()).ready, "gRPC ServerReady")
    check(stub.ModelReady(pb.ModelReadyRequest(name="digits")).ready, "gRPC ModelReady")
    check(not stub.ModelReady(pb.ModelReadyRequest(name="nope")).ready, "gRPC ModelReady unknown")
    sm = stub.ServerMetadata(pb.ServerMetadataRequest())
    check(sm.name == "mcdrop" and "binary_tensor_data" in sm.extensions, f"ServerMetadata {sm}")
    mm = stub.ModelMetadata(pb.ModelMetadataRequest(name="digits", version="1"))
    names = [o.name for o in mm.outputs]
    check(names == ["probabilities", "predicted_class", "entropy", "mutual_information",
                    "variation_ratio", "samples", "standard_error", "samples_per_row"],
          f"digits outputs {names}")
    check(list(mm.inputs[0].shape) == [-1, 64] and mm.inputs[0].datatype == "FP32",
          "digits input metadata")

    for path, want in [("/v2/health/live", 200), ("/v2/health/ready", 200),
                       ("/v2/models/concrete/ready", 200),
                       ("/v2/models/concrete/versions/1/ready", 200),
                       ("/v2/models/concrete/versions/9/ready", 400),
                       ("/v2/models/nope/ready", 400)]:
        status, _, _ = http_call(hport, "GET", path)
        check(status == want, f"GET {path}: {status}, expected {want}")
    status, _, body = http_call(hport, "GET", "/v2")
    doc = json.loads(body)
    check(status == 200 and doc["name"] == "mcdrop" and "extensions" in doc, f"GET /v2 {doc}")
    status, _, body = http_call(hport, "GET", "/v2/models/concrete/versions/1")
    meta = json.loads(body)
    check(status == 200 and meta["versions"] == ["1"] and meta["platform"] == "mcdrop",
          f"model metadata {meta}")
    http_names = [o["name"] for o in meta["outputs"]]
    check(http_names == ["mean", "variance", "std", "model_variance", "interval_lower",
                         "interval_upper", "samples", "standard_error", "samples_per_row"],
          f"concrete outputs {http_names}")
    gm = stub.ModelMetadata(pb.ModelMetadataRequest(name="concrete"))
    check([o.name for o in gm.outputs] == http_names, "the same names over gRPC and HTTP")
    check([list(o.shape) for o in gm.outputs] == [o["shape"] for o in meta["outputs"]],
          "the same shapes over gRPC and HTTP")


def test_same_numbers(port, hport):
    """mcdrop.v1, OIP gRPC (typed and raw) and OIP HTTP (JSON and binary):
    the same seed, the same numbers."""
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    rows = [CONCRETE, [332.5, 142.5, 0, 228, 0, 932, 594, 270]]
    flat = [v for r in rows for v in r]
    params = {"samples": 300, "seed": 11, "interval_levels": "0.5,0.9"}
    want = ["mean", "variance", "std", "model_variance", "interval_lower", "interval_upper",
            "samples"]
    ref = v1_grpc.InferenceStub(channel).Predict(v1.PredictRequest(
        model="concrete", inputs=flat, shape=[2, 8], samples=300, seed=11,
        interval_levels=[0.5, 0.9], return_samples=True), timeout=30)
    results = {}
    for name, raw, dt in [("grpc typed FP32", False, "FP32"), ("grpc typed FP64", False, "FP64"),
                          ("grpc raw FP32", True, "FP32"), ("grpc raw FP64", True, "FP64")]:
        resp, err = run_grpc(stub, grpc_request("concrete", flat, [2, 8], dt, raw, params, want))
        check(err is None, f"{name}: {err}")
        if resp:
            check(resp.id == "req-1", f"{name} echoes the id")
            check(resp.parameters["samples"].int64_param == 300, f"{name} echoes T")
            check(resp.parameters["seed"].uint64_param == 11, f"{name} echoes the seed")
            results[name] = decode_grpc(resp)
    req = {"id": "h1", "parameters": {"samples": 300, "seed": 11, "interval_levels": "0.5,0.9"},
           "inputs": [{"name": "input", "shape": [2, 8], "datatype": "FP32", "data": rows}],
           "outputs": [{"name": n} for n in want]}
    status, doc, tail = http_infer(hport, "concrete", req)
    check(status == 200 and doc.get("id") == "h1", f"HTTP JSON {status} {doc.get('error')}")
    params = dict(doc["parameters"])
    check(re.fullmatch(r"[0-9a-f]{12}-[0-9a-f]{16}", params.pop("prediction_id", "")) is not None,
          f"HTTP prediction_id {doc['parameters']}")
    check(params == {"samples": 300, "seed": 11}, f"HTTP parameters {doc['parameters']}")
    results["http json"] = decode_http(doc, tail)
    breq = dict(req, inputs=[{"name": "input", "shape": [2, 8], "datatype": "FP32",
                              "parameters": {"binary_data_size": 64}}],
                parameters=dict(req["parameters"], binary_data_output=True))
    del breq["outputs"]
    breq["outputs"] = [{"name": n, "parameters": {"binary_data": True}} for n in want]
    status, doc, tail = http_infer(hport, "concrete", breq,
                                   np.array(flat, dtype="<f4").tobytes())
    check(status == 200, f"HTTP binary {status} {doc.get('error')}")
    check(all("data" not in o for o in doc["outputs"]), "binary outputs carry no JSON data")
    results["http binary"] = decode_http(doc, tail)
    # Some outputs binary, some JSON.
    mixed = dict(req, outputs=[{"name": "mean", "parameters": {"binary_data": True}},
                               {"name": "std"}])
    status, doc, tail = http_infer(hport, "concrete", mixed)
    check(status == 200 and len(tail) == 16 and "data" in doc["outputs"][1],
          f"HTTP mixed binary/JSON outputs: {status} {len(tail)}")
    m = decode_http(doc, tail)
    check(np.array_equal(m["mean"], results["http json"]["mean"]), "mixed outputs' mean")

    ref_mean = np.array([[o.mean for o in r.outputs] for r in ref.rows])
    ref_var = np.array([[o.variance for o in r.outputs] for r in ref.rows])
    ref_lo = np.array([[[iv.lower for iv in o.intervals] for o in r.outputs] for r in ref.rows])
    ref_samples = np.array(ref.sample_values, dtype=np.float32).reshape(tuple(ref.sample_shape))
    for name, r in results.items():
        check(r["mean"].shape == (2, 1) and r["interval_lower"].shape == (2, 1, 2),
              f"{name} shapes {r['mean'].shape} {r['interval_lower'].shape}")
        check(r["samples"].shape == (300, 2, 1), f"{name} samples shape {r['samples'].shape}")
        check(np.array_equal(r["mean"], ref_mean), f"{name} mean equals mcdrop.v1's")
        check(np.array_equal(r["variance"], ref_var), f"{name} variance equals mcdrop.v1's")
        check(np.array_equal(r["interval_lower"], ref_lo), f"{name} intervals equal mcdrop.v1's")
        check(np.array_equal(r["samples"], ref_samples), f"{name} samples equal mcdrop.v1's")
        check(np.allclose(r["std"], np.sqrt(r["variance"])), f"{name} std")
        check(np.all(r["model_variance"] <= r["variance"]), f"{name} model_variance")
        check(np.all(r["interval_lower"] < r["interval_upper"]), f"{name} interval order")

    # Predictive draws: the samples become y = f + N(0, 1/tau), the same
    # through mcdrop.v1 and OIP HTTP, and not the passes themselves.
    draws_v1 = v1_grpc.InferenceStub(channel).Predict(v1.PredictRequest(
        model="concrete", inputs=flat, shape=[2, 8], samples=300, seed=11,
        return_samples=True, predictive_draws=True), timeout=30)
    d1 = np.array(draws_v1.sample_values, dtype=np.float32).reshape(300, 2, 1)
    status, doc, tail = http_infer(hport, "concrete", {
        "parameters": {"samples": 300, "seed": 11, "predictive_draws": True},
        "inputs": [{"name": "input", "shape": [2, 8], "datatype": "FP32", "data": rows}],
        "outputs": [{"name": "samples", "parameters": {"binary_data": True}}]})
    check(status == 200, f"HTTP predictive_draws: {status} {doc.get('error')}")
    dh = decode_http(doc, tail)["samples"]
    check(np.array_equal(d1, dh), "draws equal through mcdrop.v1 and OIP HTTP")
    check(not np.array_equal(d1, ref_samples), "draws are not the passes")
    check(d1.var(axis=0).mean() > ref_samples.var(axis=0).mean(),
          "draws spread more than the passes")

    # A standard-error target: the same rows, T per row, standard errors and
    # (NaN-padded) samples through mcdrop.v1 and OIP HTTP.
    target_v1 = v1_grpc.InferenceStub(channel).Predict(v1.PredictRequest(
        model="concrete", inputs=flat, shape=[2, 8], seed=11, return_samples=True,
        target=v1.SampleTarget(relative_error=0.02, min_samples=50)), timeout=30)
    status, doc, tail = http_infer(hport, "concrete", {
        "parameters": {"seed": 11, "target_relative_error": 0.02, "min_samples": 50},
        "inputs": [{"name": "input", "shape": [2, 8], "datatype": "FP32", "data": rows}],
        "outputs": [{"name": n} for n in ["mean", "standard_error", "samples_per_row",
                                          "samples"]]})
    check(status == 200, f"HTTP target: {status} {doc.get('error')}")
    t = decode_http(doc, tail)
    t_rows = [r.samples for r in target_v1.rows]
    check(list(t["samples_per_row"]) == t_rows and min(t_rows) >= 50,
          f"T per row {list(t['samples_per_row'])} equals mcdrop.v1's {t_rows}")
    check(np.array_equal(t["mean"][:, 0], [r.outputs[0].mean for r in target_v1.rows]),
          "target: means equal mcdrop.v1's")
    se = np.array([r.outputs[0].standard_error for r in target_v1.rows])
    check(np.array_equal(t["standard_error"][:, 0], se), "target: standard errors equal")
    check(np.all(se <= 0.02 * np.array([r.outputs[0].std for r in target_v1.rows])),
          f"target met: {se}")
    for b in range(2):
        mine = np.array(target_v1.rows[b].sample_values, dtype=np.float32)
        check(mine.size == t_rows[b], f"row {b} returns its {t_rows[b]} samples")
        padded = t["samples"][:, b, 0]
        check(np.array_equal(padded[:t_rows[b]], mine) and np.all(np.isnan(padded[t_rows[b]:])),
              f"row {b}: OIP samples are mcdrop.v1's, NaN after its T")
        check(abs(mine.std(ddof=1) / np.sqrt(mine.size) - se[b]) <= 1e-5 * se[b],
              f"row {b}: the standard error is that of its samples")

    # Half-precision inputs (raw only over gRPC; binary or JSON numbers over HTTP):
    # the values are exactly representable, so the answer is the FP32 one.
    halfable = [[512, 0, 0, 160, 2.5, 1040, 676, 28]]
    hflat = halfable[0]
    base, _ = run_grpc(stub, grpc_request("concrete", hflat, [1, 8], "FP32", True, params))
    for dt in ["FP16", "BF16"]:
        resp, err = run_grpc(stub, grpc_request("concrete", hflat, [1, 8], dt, True, params))
        check(err is None and np.array_equal(decode_grpc(resp)["mean"], decode_grpc(base)["mean"]),
              f"gRPC raw {dt} equals FP32 ({err})")
    b16 = np.array(hflat, dtype="<f2").tobytes()
    status, doc, tail = http_infer(hport, "concrete", {
        "parameters": params, "inputs": [{"name": "input", "shape": [1, 8], "datatype": "FP16",
                                          "parameters": {"binary_data_size": 16}}]}, b16)
    check(status == 200 and np.array_equal(decode_http(doc, tail)["mean"],
                                           decode_grpc(base)["mean"]), "HTTP binary FP16")


def test_parameters_and_classification(port, hport):
    stub = pb_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
    # Deterministic mode: one pass with the weights scaled, no spread.
    status, doc, tail = http_infer(hport, "concrete", {
        "parameters": {"mode": "deterministic"},
        "inputs": [{"name": "input", "shape": [8], "datatype": "FP64", "data": CONCRETE}]})
    out = decode_http(doc, tail)
    check(status == 200 and doc["parameters"]["samples"] == 1, f"deterministic T {doc.get('parameters')}")
    check(np.all(out["model_variance"] == 0), "deterministic: no model variance")
    # exclude_noise: the variance is the model's only.
    for ex in (True, False):
        resp, err = run_grpc(stub, grpc_request("concrete", CONCRETE, [1, 8], params={
            "samples": 200, "seed": 5, "exclude_noise": ex}))
        r = decode_grpc(resp)
        same = np.array_equal(r["variance"], r["model_variance"])
        check(same == ex, f"exclude_noise={ex}: variance == model_variance is {same}")
    # A seed above 2^63 (uint64_param) is echoed as given.
    r = grpc_request("concrete", CONCRETE, [1, 8])
    r.parameters["seed"].uint64_param = 2 ** 64 - 5
    resp, err = run_grpc(stub, r)
    check(err is None and resp.parameters["seed"].uint64_param == 2 ** 64 - 5, "uint64 seed")
    status, doc, _ = http_infer(hport, "concrete", {
        "parameters": {"seed": 2 ** 64 - 5, "samples": 10},
        "inputs": [{"name": "input", "shape": [1, 8], "datatype": "FP32", "data": CONCRETE}]})
    check(doc["parameters"]["seed"] == 2 ** 64 - 5, f"HTTP uint64 seed {doc['parameters']}")
    # A generous timeout passes; an impossible one is DEADLINE_EXCEEDED / 504.
    status, doc, _ = http_infer(hport, "concrete", {
        "parameters": {"samples": 100, "timeout": 10_000_000},
        "inputs": [{"name": "input", "shape": [1, 8], "datatype": "FP32", "data": CONCRETE}]})
    check(status == 200, f"timeout 10 s: {status}")
    status, doc, _ = http_infer(hport, "concrete", {
        "parameters": {"samples": 100000, "timeout": 1},
        "inputs": [{"name": "input", "shape": [1024, 8], "datatype": "FP32",
                    "data": CONCRETE * 1024}]})
    check(status == 504, f"timeout 1 us: {status} {doc}")
    resp, err = run_grpc(stub, grpc_request("concrete", CONCRETE * 1024, [1024, 8], params={
        "samples": 100000, "timeout": 1}))
    check(err is not None and err.code() == grpc.StatusCode.DEADLINE_EXCEEDED,
          f"gRPC timeout 1 us: {err and err.code()}")
    # Classification: every output, and the samples only when asked.
    blank = [0.0] * 64
    status, doc, tail = http_infer(hport, "digits", {
        "parameters": {"samples": 200, "seed": 3},
        "inputs": [{"name": "input", "shape": [2, 64], "datatype": "FP32", "data": [ZERO, blank]}]})
    out = decode_http(doc, tail)
    check(sorted(out) == ["entropy", "mutual_information", "predicted_class", "probabilities",
                          "variation_ratio"], f"classification default outputs {sorted(out)}")
    check(out["predicted_class"].dtype == np.int64 and out["predicted_class"][0] == 0,
          f"the 0 is a 0: {out['predicted_class']}")
    check(np.allclose(out["probabilities"].sum(axis=1), 1), "probabilities sum to 1")
    check(out["entropy"][1] > out["entropy"][0], "the blank is more uncertain than the 0")
    check(np.all(out["mutual_information"] <= out["entropy"] + 1e-12), "MI <= entropy")
    resp, err = run_grpc(stub, grpc_request("digits", ZERO + blank, [2, 64], params={
        "samples": 200, "seed": 3}, outputs=["samples", "entropy"]))
    g = decode_grpc(resp)
    check(list(g) == ["samples", "entropy"] and g["samples"].shape == (200, 2, 10),
          f"asked outputs only, in order: {list(g)}")
    check(np.array_equal(g["entropy"], out["entropy"]), "gRPC and HTTP entropy agree")


def test_errors(port, hport):
    stub = pb_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
    ok_in = {"name": "input", "shape": [1, 8], "datatype": "FP32", "data": CONCRETE}
    cases = [  # (what, model, HTTP request, gRPC request, HTTP status, gRPC code, text)
        ("wrong shape", "concrete", {"inputs": [dict(ok_in, shape=[1, 7], data=CONCRETE[:7])]},
         grpc_request("concrete", CONCRETE[:7], [1, 7]), 400, "INVALID_ARGUMENT", "8 values per row"),
        ("wrong datatype", "concrete", {"inputs": [dict(ok_in, datatype="INT32")]},
         grpc_request("concrete", CONCRETE, [1, 8], "FP32").__class__(
             model_name="concrete", inputs=[pb.ModelInferRequest.InferInputTensor(
                 name="input", datatype="INT32", shape=[1, 8])],
             raw_input_contents=[b"\0" * 32]), 400, "INVALID_ARGUMENT", "INT32"),
        ("wrong tensor name", "concrete", {"inputs": [dict(ok_in, name="x")]},
         None, 400, "INVALID_ARGUMENT", "unknown input tensor \"x\""),
        ("count mismatch", "concrete", {"inputs": [dict(ok_in, data=CONCRETE + [1])]},
         grpc_request("concrete", CONCRETE + [1], [1, 8], raw=False), 400, "INVALID_ARGUMENT",
         "the shape needs 8"),
        ("unknown model", "nope", {"inputs": [ok_in]}, None, 404, "NOT_FOUND", "nope"),
        ("unknown parameter", "concrete", {"inputs": [ok_in], "parameters": {"temperature": 1}},
         grpc_request("concrete", CONCRETE, [1, 8], params={"temperature": 1}), 400,
         "INVALID_ARGUMENT", "unknown parameter \"temperature\""),
        ("parameter of the wrong type", "concrete",
         {"inputs": [ok_in], "parameters": {"samples": "many"}},
         grpc_request("concrete", CONCRETE, [1, 8], params={"samples": "many"}), 400,
         "INVALID_ARGUMENT", "\"samples\" must be"),
        ("bad mode", "concrete", {"inputs": [ok_in], "parameters": {"mode": "greedy"}},
         grpc_request("concrete", CONCRETE, [1, 8], params={"mode": "greedy"}), 400,
         "INVALID_ARGUMENT", "greedy"),
        ("unknown output", "concrete", {"inputs": [ok_in], "outputs": [{"name": "median"}]},
         grpc_request("concrete", CONCRETE, [1, 8], outputs=["median"]), 400,
         "INVALID_ARGUMENT", "unknown output \"median\""),
        ("intervals without levels", "concrete",
         {"inputs": [ok_in], "outputs": [{"name": "interval_lower"}]},
         grpc_request("concrete", CONCRETE, [1, 8], outputs=["interval_lower"]), 400,
         "INVALID_ARGUMENT", "interval_levels"),
        ("too many passes", "concrete", {"inputs": [ok_in], "parameters": {"samples": 10 ** 9}},
         grpc_request("concrete", CONCRETE, [1, 8], params={"samples": 10 ** 9}), 400,
         "INVALID_ARGUMENT", "samples"),
    ]
    for what, model, hreq, greq, hstatus, gcode, text in cases:
        status, doc, _ = http_infer(hport, model, hreq)
        check(status == hstatus and text in doc.get("error", ""),
              f"HTTP {what}: {status} {doc}")
        if greq is None:
            greq = pb.ModelInferRequest(model_name=model)
            greq.inputs.add(name="x" if "name" in what else "input", datatype="FP32", shape=[1, 8])
            greq.raw_input_contents.append(np.array(CONCRETE, dtype="<f4").tobytes())
        resp, err = run_grpc(stub, greq)
        check(err is not None and err.code().name == gcode and text in err.details(),
              f"gRPC {what}: {err and (err.code(), err.details())}")
    # Non-finite input: JSON has no NaN, so only binary (HTTP) and raw (gRPC) can carry one.
    nan = np.array(CONCRETE, dtype="<f4")
    nan[3] = np.nan
    status, doc, _ = http_infer(hport, "concrete", {"inputs": [
        {"name": "input", "shape": [1, 8], "datatype": "FP32",
         "parameters": {"binary_data_size": 32}}]}, nan.tobytes())
    check(status == 400 and "finite" in doc.get("error", ""), f"HTTP NaN: {status} {doc}")
    r = grpc_request("concrete", CONCRETE, [1, 8])
    r.raw_input_contents[0] = nan.tobytes()
    resp, err = run_grpc(stub, r)
    check(err is not None and err.code() == grpc.StatusCode.INVALID_ARGUMENT and
          "finite" in err.details(), f"gRPC NaN: {err and err.details()}")
    # An unknown version.
    status, _, body = http_call(hport, "GET", "/v2/models/concrete/versions/7")
    check(status == 404, f"unknown version: {status} {body}")
    status, _, body = http_call(hport, "GET", "/v2/models/concrete/versions/x")
    check(status == 400, f"version that is no number: {status} {body}")
    # The HTTP layer's own refusals, each a JSON error.
    for method, path, body, want in [("GET", "/v3", None, 404), ("DELETE", "/v2", None, 405),
                                     ("GET", "/v2/models/concrete/infer", None, 405),
                                     ("POST", "/v2/models/concrete/infer", b"{", 400),
                                     ("POST", "/v2/models/concrete/infer", b"[]", 400),
                                     ("GET", "/v2/models/concrete/explain", None, 404),
                                     ("GET", "/v2/models/%FF%FE", None, 404),
                                     ("POST", "/v2/models/%FF/infer", b"{}", 404),
                                     ("POST", "/v2/models/concrete/infer",
                                      b'{"inputs": [], "\xff": 1}', 400)]:
        status, _, data = http_call(hport, method, path, body)
        check(status == want and "error" in json.loads(data), f"{method} {path}: {status} {data}")
    # Bytes that are not HTTP at all: an error or a closed connection, and the
    # server still answers.
    for junk in [b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + os.urandom(64),
                 b"GET / HTTP/1.1\r\n" + b"X: " + b"a" * 20000 + b"\r\n\r\n",
                 b"POST /v2/models/concrete/infer HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n",
                 os.urandom(4096)]:
        s = socket.create_connection(("127.0.0.1", hport))
        s.settimeout(10)
        try:
            s.sendall(junk)
            reply = s.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            reply = b""
        s.close()
        check(reply == b"" or reply.startswith(b"HTTP/1.1 4"), f"junk answered {reply[:40]}")
    check(http_call(hport, "GET", "/v2/health/live")[0] == 200, "alive after the junk")


def test_tokens_and_tls():
    certs = tempfile.mkdtemp()
    subprocess.run(["bash", CERTS, certs], check=True, capture_output=True)
    tokens = os.path.join(certs, "tokens")
    with open(tokens, "w") as f:
        f.write("s3cret\n")
    proc, port, hport = start(["--auth_token_file", tokens, "--tls_cert", f"{certs}/server.crt",
                               "--tls_key", f"{certs}/server.key"])
    try:
        ctx = ssl.create_default_context(cafile=f"{certs}/ca.crt")
        req = json.dumps({"inputs": [{"name": "input", "shape": [1, 8], "datatype": "FP32",
                                      "data": CONCRETE}]}).encode()
        status, _, _ = http_call(hport, "GET", "/v2/health/ready", context=ctx)
        check(status == 200, f"TLS health without a token: {status}")
        status, h, body = http_call(hport, "POST", "/v2/models/concrete/infer", req, context=ctx)
        check(status == 401 and h.get("www-authenticate") == "Bearer", f"no token: {status} {body}")
        status, _, body = http_call(hport, "POST", "/v2/models/concrete/infer", req,
                               {"Authorization": "Bearer wrong"}, ctx)
        check(status == 401, f"wrong token: {status}")
        status, _, body = http_call(hport, "GET", "/v2/models/concrete", None,
                               {"Authorization": "Bearer wrong"}, ctx)
        check(status == 401, f"metadata with a wrong token: {status}")
        # Refused from the headers alone: the 50 MB body is never sent.
        raw = socket.create_connection(("localhost", hport))
        tls = ctx.wrap_socket(raw, server_hostname="localhost")
        tls.settimeout(10)
        tls.sendall(b"POST /v2/models/concrete/infer HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Length: 50000000\r\n\r\n")
        reply = tls.recv(4096)
        tls.close()
        check(reply.startswith(b"HTTP/1.1 401"), f"refused before the body: {reply[:60]}")
        status, _, body = http_call(hport, "POST", "/v2/models/concrete/infer", req,
                               {"Authorization": "Bearer s3cret"}, ctx)
        check(status == 200 and "mean" in body.decode(), f"token over TLS: {status} {body[:80]}")
        try:
            http_call(hport, "GET", "/v2/health/live")  # plaintext to a TLS port
            check(False, "plaintext HTTP on the TLS port was answered")
        except (http.client.HTTPException, ConnectionError, OSError):
            pass
        creds = grpc.ssl_channel_credentials(open(f"{certs}/ca.crt", "rb").read())
        stub = pb_grpc.GRPCInferenceServiceStub(grpc.secure_channel(
            f"localhost:{port}", creds))
        check(stub.ServerLive(pb.ServerLiveRequest()).live, "gRPC ServerLive open")
        resp, err = run_grpc(stub, grpc_request("concrete", CONCRETE, [1, 8]))
        check(err is not None and err.code() == grpc.StatusCode.UNAUTHENTICATED, "gRPC no token")
        resp, err = run_grpc(stub, grpc_request("concrete", CONCRETE, [1, 8]),
                             metadata=[("authorization", "Bearer s3cret")])
        check(err is None, f"gRPC token: {err}")
    finally:
        proc.kill()
        proc.wait()


def test_drain():
    """SIGTERM while an HTTP request computes: it is answered, then the server
    exits 0; new connections are refused."""
    proc, port, hport = start(["--grace_period", "30s"])
    result = {}

    def slow():
        result["r"] = http_infer(hport, "concrete", {
            "parameters": {"samples": 20000},
            "inputs": [{"name": "input", "shape": [256, 8], "datatype": "FP32",
                        "data": CONCRETE * 256}]})
    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    t.join(60)
    status = result.get("r", (None,))[0]
    check(status == 200, f"the in-flight HTTP request was answered: {status}")
    check(proc.wait(60) == 0, "exit 0 after the drain")


def main():
    proc, port, hport = start()
    try:
        test_endpoints(port, hport)
        test_same_numbers(port, hport)
        test_parameters_and_classification(port, hport)
        test_errors(port, hport)
        check(proc.poll() is None, "the server is still running")
    finally:
        proc.kill()
        proc.wait()
    test_tokens_and_tls()
    test_drain()
    if failures:
        print(f"{len(failures)} failure(s)")
        sys.exit(1)
    print(f"oip client: ok ({checks[0]} checks)")


if __name__ == "__main__":
    main()
