#!/usr/bin/python3
"""Writes the fuzzers' seed corpora (committed in fuzz/corpus/):

  model_file/       small valid model files (regression and classification,
                    each activation), the bundled concrete model, format v2
                    files (a convnet with every layer kind, a table model),
                    and broken variants (truncated, bad length prefix, bad
                    JSON, offsets out of range; v2: zero stride, negative
                    padding, kernel larger than the input, unknown layer
                    type, absurd input shape); calibrated files (a
                    regressor, an aps classifier) and broken calibrations
  predict_request/  serialized mcdrop.v1.PredictRequest messages, valid and
                    invalid, for the models of fuzz/fixture.h ("r": 4
                    inputs, 2 outputs; "c": 4 inputs, 3 classes; "i":
                    [2, 9, 8] images, 3 classes)

  http_request/     raw HTTP/1.1 requests to the OIP REST API (JSON and
                    binary tensors, valid and invalid) for http_request_fuzz.cc

  /usr/bin/python3 fuzz/make_corpus.py
"""
import base64
import json
import os
import shutil
import struct
import sys

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(here)
sys.path.insert(0, os.path.join(root, "client", "python"))

import torch  # noqa: E402
from mcdrop.torch_export import export_torch  # noqa: E402
from mcdrop.v1 import inference_pb2 as pb  # noqa: E402

models = os.path.join(here, "corpus", "model_file")
requests = os.path.join(here, "corpus", "predict_request")


def fresh(d):
    """Empties corpus directory d of generated seeds; regress_* files are
    inputs the fuzzers found (docs/security.md) and are kept."""
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        if not f.startswith("regress_"):
            os.remove(os.path.join(d, f))


for d in (models, requests):
    fresh(d)

torch.manual_seed(0)
for i, (act, task, outs) in enumerate([(torch.nn.ReLU, "regression", 1),
                                       (torch.nn.Tanh, "classification", 3),
                                       (torch.nn.Sigmoid, "regression", 2),
                                       (torch.nn.GELU, "classification", 2)]):
    net = torch.nn.Sequential(torch.nn.Dropout(0.1), torch.nn.Linear(3, 5), act(),
                              torch.nn.Dropout(0.2), torch.nn.Linear(5, outs))
    kw = dict(tau=4.0, output_mean=[1.0] * outs, output_std=[2.0] * outs) if task == "regression" else {}
    export_torch(net, os.path.join(models, f"small_{i}.safetensors"), task=task,
                 input_mean=[0.5, 0, -1], input_std=[1, 2, 3], **kw)
shutil.copy(os.path.join(root, "models", "concrete.safetensors"), models)

# Format v2: a convolutional classifier with every layer kind, and a table
# model v1 cannot hold (batch norm, mixed activations, a Linear without bias).
nn = torch.nn
conv = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.LeakyReLU(0.1), nn.Dropout2d(0.3),
                     nn.MaxPool2d(2), nn.Conv2d(4, 4, 3, groups=2, dilation=1), nn.GELU(), nn.AvgPool2d(2, 1),
                     nn.Flatten(), nn.Dropout(0.2), nn.Linear(4 * 1 * 1, 6), nn.Tanh(), nn.Dropout(0.1),
                     nn.Linear(6, 3))
table = nn.Sequential(nn.Linear(3, 6, bias=False), nn.BatchNorm1d(6), nn.Sigmoid(), nn.Dropout(0.2),
                      nn.Linear(6, 4), nn.ReLU(), nn.Dropout(0.1), nn.Linear(4, 2))
for net in (conv, table):
    for m in net.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
export_torch(conv, os.path.join(models, "v2_conv.safetensors"), task="classification",
             input_shape=[2, 8, 8], input_mean=[0.5, -0.5], input_std=[2, 1])
export_torch(table, os.path.join(models, "v2_table.safetensors"), task="regression", tau=2.0,
             format="v2", output_mean=[1, 2], output_std=[3, 4])
v2 = open(os.path.join(models, "v2_conv.safetensors"), "rb").read()
n2 = struct.unpack("<Q", v2[:8])[0]
h2 = v2[8:8 + n2].decode()


def v2_broken(name, old, new):
    """v2_conv with one header edit, the length prefix fixed up."""
    assert old in h2, old
    head = h2.replace(old, new, 1).encode()
    open(os.path.join(models, f"broken_v2_{name}.safetensors"), "wb").write(
        struct.pack("<Q", len(head)) + head + v2[8 + n2:])


v2_broken("zero_stride", '\\"stride\\": [1, 1]', '\\"stride\\": [0, 1]')
def with_metadata(src, name, key, value):
    """Copy of model file src with metadata key set to value (a string)."""
    data = open(os.path.join(models, src), "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    header["__metadata__"][key] = value
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    open(os.path.join(models, name), "wb").write(struct.pack("<Q", len(head)) + head + data[8 + n:])


calibration = {"method": "split_conformal", "score": "normalized_residual", "samples": 100, "seed": 1,
               "rows": 4, "source": "seed", "created": "2026-12-02T00:00:00Z",
               "scores": [[0.1, 0.5, 1.25, 3.0]]}
with_metadata("small_0.safetensors", "calibrated.safetensors", "calibration", json.dumps(calibration))
with_metadata("small_1.safetensors", "calibrated_classifier.safetensors", "calibration",
              json.dumps(dict(calibration, score="aps", scores=[[0.5, 0.9, 0.99, 1.0]])))
with_metadata("small_0.safetensors", "broken_calibration_unsorted.safetensors", "calibration",
              json.dumps(dict(calibration, scores=[[3.0, 0.1, 0.5, 1.25]])))
with_metadata("small_0.safetensors", "broken_calibration_task.safetensors", "calibration",
              json.dumps(dict(calibration, score="lac")))
v2_broken("negative_padding", '\\"padding\\": [1, 1]', '\\"padding\\": [-1, 1]')
v2_broken("kernel_too_large", "[2, 8, 8]", "[2, 2, 2]")
v2_broken("unknown_type", '\\"type\\": \\"gelu\\"', '\\"type\\": \\"swish\\"')
v2_broken("huge_shape", "[2, 8, 8]", "[2, 65536, 65536]")

good = open(os.path.join(models, "small_0.safetensors"), "rb").read()
n = struct.unpack("<Q", good[:8])[0]
header = good[8:8 + n]
broken = {
    "truncated": good[: len(good) // 2],
    "short_prefix": good[:5],
    "huge_prefix": struct.pack("<Q", 1 << 60) + good[8:],
    "bad_json": good[:8] + header.replace(b"{", b"[", 1) + good[8 + n:],
    "offsets_out_of_range": good[:8] + header.replace(b'"data_offsets":[0,', b'"data_offsets":[9,', 1)
    + good[8 + n:],
}
for name, data in broken.items():
    open(os.path.join(models, f"broken_{name}.safetensors"), "wb").write(data)


def request(name, model="r", rows=1, q=4, **kw):
    r = pb.PredictRequest(model=model, shape=[rows, q], inputs=[0.25 * i for i in range(rows * q)], **kw)
    open(os.path.join(requests, name), "wb").write(r.SerializeToString())


request("one_row", samples=8, seed=1)
request("batch_intervals", rows=3, samples=16, seed=2, interval_levels=[0.5, 0.9])
request("samples_back", rows=2, samples=4, seed=3, return_samples=True)
request("deterministic", rows=2, mode=pb.DETERMINISTIC)
request("classifier", model="c", rows=2, samples=10, seed=4, return_samples=True)
request("exclude_noise", rows=1, samples=5, exclude_noise=True)
request("classifier_sets", model="c", rows=2, samples=10, seed=6, set_levels=[0.5, 0.95])
request("sets_uncalibrated", model="i", rows=1, q=2 * 9 * 8, samples=4, set_levels=[0.9])
request("sets_on_regression", rows=1, samples=4, set_levels=[0.9])
request("wrong_width", q=3)
request("negative_samples", samples=-1)
request("too_many_rows", rows=100)
request("image", model="i", rows=2, q=2 * 9 * 8, samples=8, seed=5, return_samples=True)
image = pb.PredictRequest(model="i", shape=[1, 2, 9, 8], inputs=[0.01 * i for i in range(144)], samples=4)
open(os.path.join(requests, "image_bchw"), "wb").write(image.SerializeToString())
image = pb.PredictRequest(model="i", shape=[2, 9, 8], inputs=[0.01 * i for i in range(144)],
                          mode=pb.DETERMINISTIC)
open(os.path.join(requests, "image_chw"), "wb").write(image.SerializeToString())
r = pb.PredictRequest(model="r", shape=[1, 4], inputs=[float("nan"), 0, 0, 0])
open(os.path.join(requests, "nan"), "wb").write(r.SerializeToString())
open(os.path.join(requests, "empty"), "wb").write(b"")
# Found by the fuzzer (2026-12-03): a classifier answer whose probabilities
# overflowed to NaN reached the feedback monitor's ECE as a NaN confidence.
open(os.path.join(requests, "nan_confidence"), "wb").write(base64.b64decode(
    "CgFjGgICBCIgAAAAAAQAAAAAAAAAAABAP1sAAIAABACg//8/////KAowAQ=="))

http_dir = os.path.join(here, "corpus", "http_request")
fresh(http_dir)


def http_request(name, body, path="/v2/models/r/infer", binary=b"", extra=""):
    head = json.dumps(body).encode() if not isinstance(body, bytes) else body
    hl = f"Inference-Header-Content-Length: {len(head)}\r\n" if binary else ""
    msg = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{hl}{extra}"
           f"Content-Length: {len(head) + len(binary)}\r\n\r\n").encode() + head + binary
    open(os.path.join(http_dir, name), "wb").write(msg)


row = {"name": "input", "shape": [2, 4], "datatype": "FP32", "data": [[0, 1, 2, 3], [4, 5, 6, 7]]}
http_request("json", {"id": "a", "inputs": [row], "parameters": {"samples": 8, "seed": 1}})
http_request("json_intervals", {"inputs": [row], "parameters": {"interval_levels": "0.5,0.9"},
                                "outputs": [{"name": "interval_lower"}, {"name": "samples"}]})
http_request("classifier", {"inputs": [row], "outputs": [{"name": "probabilities"}]},
             path="/v2/models/c/infer")
http_request("binary", {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP16",
                                    "parameters": {"binary_data_size": 8}}],
                        "parameters": {"binary_data_output": True}},
             binary=struct.pack("<4e", 1, 2, 3, 4))
http_request("fp64_nested", {"inputs": [dict(row, datatype="FP64", data=[[[0, 1], [2, 3]]])],
                             "parameters": {"mode": "deterministic", "exclude_noise": True}})
http_request("image", {"inputs": [{"name": "input", "shape": [1, 2, 9, 8], "datatype": "FP32",
                                   "data": [0.01 * i for i in range(144)]}],
                       "parameters": {"samples": 4}}, path="/v2/models/i/infer")
http_request("conformal", {"inputs": [row], "parameters": {"interval_levels": "0.5,0.99", "samples": 8},
                           "outputs": [{"name": "conformal_lower"}, {"name": "conformal_upper"}]})
http_request("sets", {"inputs": [row], "parameters": {"set_levels": "0.5,0.9"},
                      "outputs": [{"name": "prediction_set"}, {"name": "probabilities"}]},
             path="/v2/models/c/infer")
http_request("bad_json", b'{"inputs": [')
http_request("bad_binary", {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32",
                                        "parameters": {"binary_data_size": 99}}]}, binary=b"xx")
http_request("feedback", {"items": [{"id": "000000000001-0000000000000001:0", "targets": [1.5, 2]},
                                    {"id": "x", "targets": 3}, {"id": "y", "label": 1}]},
             path="/v2/models/r/feedback")
http_request("feedback_classifier", {"items": [{"id": "01a239dc534f-d3355b416fc04097:1", "label": 2}]},
             path="/v2/models/c/versions/1/feedback")
http_request("feedback_bad", b'{"items": [{"id": 5, "targets": ["a", null]}], "x": 1}',
             path="/v2/models/r/feedback")
open(os.path.join(http_dir, "chunked"), "wb").write(
    b"POST /v2/models/r/infer HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n0\r\n\r\n")
print(f"wrote {len(os.listdir(models))} model files, {len(os.listdir(requests))} requests, "
      f"{len(os.listdir(http_dir))} HTTP requests")
